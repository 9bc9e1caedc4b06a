"""faxgw: an Internet-fax-over-email gateway.

Files dropped into a spool become fax emails to an Internet fax service, sent through a mail
server that signs in with OAuth2 (Exchange Online, Outlook.com) or a password; every job's
state and status code is kept in a job store.
"""

__version__ = "0.1.0"
