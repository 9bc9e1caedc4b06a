"""Transports that hand a fax email to a mail server (SMTP now; Microsoft Graph later)."""

from .smtp import SmtpSession, tls_context, translate

__all__ = ["SmtpSession", "tls_context", "translate"]
