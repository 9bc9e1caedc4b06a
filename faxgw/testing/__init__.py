"""Test support for faxgw: a real, Exchange-like SMTP server (needs the ``demo`` extra).

Names are imported lazily (PEP 562) so that ``python -m faxgw.testing.smtp_server`` does not
import that module twice (runpy warns when a package pre-imports the module it runs), and
so that importing :mod:`faxgw.testing` costs nothing until a server is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faxgw.testing.smtp_faults import Fault, FaultPlan
    from faxgw.testing.smtp_ledger import Received
    from faxgw.testing.smtp_server import FaxSMTPServer

__all__ = ["FaxSMTPServer", "Fault", "FaultPlan", "Received"]

_HOMES = {
    "FaxSMTPServer": "faxgw.testing.smtp_server",
    "Fault": "faxgw.testing.smtp_faults",
    "FaultPlan": "faxgw.testing.smtp_faults",
    "Received": "faxgw.testing.smtp_ledger",
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
