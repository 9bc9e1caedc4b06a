"""The fax as a service wants it: service profiles (address, attachment, limits), the number
policy, and the email that carries the fax."""
