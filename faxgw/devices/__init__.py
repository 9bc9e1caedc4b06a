"""Devices: the SMTP intake that scanners and multifunction devices send faxes to.

``faxgw run`` serves it beside the worker when ``[intake.smtp] listen`` is set. A message
to ``<number>@<domain>`` becomes one job per recipient through the same use case as
``faxgw submit`` (handed in as :class:`~faxgw.devices.handler.Submit`, so this package
knows nothing of the spool or the store); the mailbox an authenticated user's faxes are
sent as is asked of a :data:`~faxgw.devices.handler.MailboxFor` in the same way. Modules:
``listener`` (aiosmtpd, who may connect), ``handler`` (MAIL, RCPT, DATA), ``message`` (a
message's documents and text), ``html_text`` (the text of an HTML body), ``staging`` (where a
message waits while it is taken), ``activity`` (the counts ``faxgw status`` shows),
``replies`` (every answer, as data), ``users`` (the users file).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .handler import Mailbox, MailboxFor, Submit

if TYPE_CHECKING:
    from .listener import serve_smtp

__all__ = ["Mailbox", "MailboxFor", "Submit", "serve_smtp"]


def __getattr__(name: str) -> Any:
    # aiosmtpd is loaded only when the listener is wanted, not by every command that reads
    # the intake's status or names its types.
    if name == "serve_smtp":
        from .listener import serve_smtp

        return serve_smtp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
