"""Devices: the SMTP intake that scanners and multifunction devices send faxes to.

``faxgw run`` serves it beside the worker when ``[intake.smtp] listen`` is set. A message
to ``<number>@<domain>`` becomes one job per recipient through the same use case as
``faxgw submit`` (handed in as :class:`~faxgw.devices.handler.Submit`, so this package
knows nothing of the spool or the store). Modules: ``listener`` (aiosmtpd, who may connect),
``handler`` (MAIL, RCPT, DATA), ``message`` (a message's documents and text), ``replies``
(every answer, as data), ``users`` (the users file).
"""

from __future__ import annotations

from .handler import Submit
from .listener import serve_smtp

__all__ = ["Submit", "serve_smtp"]
