"""Job stores: adapters behind :class:`faxgw.ports.JobStore` (SQLite in the spool; PostgreSQL
for several hosts).

Every store passes one contract suite (``tests/store_contract.py``); which one a gateway uses
is chosen in :mod:`faxgw.app.wiring`.
"""

from .sqlite import SQLiteJobStore

__all__ = ["SQLiteJobStore"]
