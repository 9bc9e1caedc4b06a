"""The ground every other part stands on, free of I/O: jobs and their states, status codes,
the one exception tree, dispositions, retry rules, fax numbers, sign-in states."""
