"""The one exception tree of faxgw.

Every error faxgw raises on purpose derives from :class:`FaxgwError`. Data travels in
attributes (``.code``, ``.reply``, ``.disposition``, ``.filename``), never parsed back out of
messages. Third-party exceptions (aiosmtplib, msal, pypdf, Pillow) are translated at one
boundary each (``transport.smtp``, ``auth``, ``render``), so the layers above only see this
tree::

    FaxgwError
    ├── ConfigError (ValueError)          a bad config file, key, type or value
    ├── SpoolError (OSError)              the spool cannot be read or written
    ├── StoreError                        the job store cannot be read or written
    │   └── JobStateError                 an action that makes no sense in a job's state
    │       └── JobNotFoundError (LookupError)
    ├── JobError                          one job cannot be sent; carries its status ``code``
    │   ├── InputError                    refused at intake: link, device file, bad manifest
    │   ├── NumberError (ValueError)      the fax number is invalid
    │   └── DocumentError                 a document is unreadable, encrypted or unsupported
    └── DeliveryError                     the transport failed the send, classified once
                                          (``.disposition``, ``.code``, ``.reply``)
        ├── TransientError                try again later
        │   └── ConnectError (ConnectionError)   no connection to the email service (360)
        ├── PermanentError                give up on this job
        └── AuthError                     a person must act (sign in, enable SMTP AUTH) first

Messages never contain secrets: passwords and tokens are not passed to any constructor here.
"""

from __future__ import annotations

from typing import Any

from .disposition import Disposition


class FaxgwError(Exception):
    """Root of every error faxgw raises on purpose.

    ``code`` is the faxgw status code (see :mod:`faxgw.domain.codes`) when one applies.
    """

    code: int | None = None

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword arguments (code, filename, …) are not in ``args``, so the default pickling
        # would call __init__ without them: rebuild from the fields instead, so that an error
        # raised in a render process arrives whole.
        return (_rebuild, (type(self), self.message), dict(vars(self)))


def _rebuild(cls: type[FaxgwError], message: str) -> FaxgwError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    return error


class ConfigError(FaxgwError, ValueError):
    """The configuration is missing, malformed or holds a wrong key, type or value."""


class SpoolError(FaxgwError, OSError):
    """The spool directory cannot be read or written."""


class StoreError(FaxgwError):
    """The job store cannot be read or written."""


class JobStateError(StoreError):
    """An action was asked of a job in a state where it makes no sense."""


class JobNotFoundError(JobStateError, LookupError):
    """No job has the given id."""


class JobError(FaxgwError):
    """One job cannot be sent as it is; ``code`` says why.

    Raised before anything is sent (intake, number, rendering), so the job fails at once
    and its originals go to the spool's failed area.
    """

    def __init__(self, message: str, *, code: int, filename: str | None = None) -> None:
        super().__init__(message, code=code)
        self.filename = filename


class InputError(JobError):
    """A dropped file or manifest was refused at intake (link, device file, bad manifest)."""


class NumberError(JobError, ValueError):
    """The fax number is not a valid telephone number."""


class DocumentError(JobError):
    """A document is corrupt, truncated, empty, encrypted, mislabelled or unsupported."""


class DeliveryError(FaxgwError):
    """The transport (a mail server, Microsoft Graph, the network) failed the send.

    Raised by a transport adapter with the failure already classified, whatever the
    transport: ``disposition`` is the verdict the engine acts on; ``code`` the status code;
    ``reply`` the server's own answer as it gave it (``550 5.7.60 …``), when there was one;
    ``ambiguous`` is True when the connection was lost after the message data was sent, so
    the server may have accepted it; ``retry_after`` is a wait the answer itself implies (a
    daily quota), in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int,
        reply: str | None = None,
        disposition: Disposition = Disposition.RETRY,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.reply = reply
        self.disposition = disposition
        self.ambiguous = ambiguous
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """A failure that may pass: the job is deferred and tried again."""


class ConnectError(TransientError, ConnectionError):
    """No connection to the email service: refused, DNS, TLS handshake, timeout (code 360)."""


class PermanentError(DeliveryError):
    """The server refused the job for good: the job fails with ``code``."""


class AuthError(DeliveryError):
    """Authentication needs a person: the account pauses, its jobs wait (361, 370, …)."""

    def __init__(self, message: str, *, code: int,
                 disposition: Disposition = Disposition.AUTH, **details: Any) -> None:
        super().__init__(message, code=code, disposition=disposition, **details)
