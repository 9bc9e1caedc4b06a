"""Transports: adapters that hand a fax email to a mail service (SMTP, Microsoft Graph).

Each adapter implements :class:`faxgw.ports.Transport`; :mod:`faxgw.app.wiring` picks one.
"""
