"""The demo's part of the gateway: one job by each intake path, then one run.

``faxgw demo`` starts a local mail server and points the configuration at it; this puts the
sample documents in (``faxgw submit``'s way, a number folder, a manifest) and sends them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from ..config import Config
from ..domain.jobs import Job
from ..engine.outcomes import RunSummary
from ..intake.register import register
from .wiring import build_worker, open_spool, store_open

__all__ = ["feed", "run"]


def feed(config: Config, samples: Path) -> None:
    """One job by each intake path: submit, a number folder, a manifest."""
    spool = open_spool(config)
    spool.ensure()
    with store_open(config) as store:
        intake = spool.submit("+4930123456", [samples / "letter.pdf", samples / "note.txt"],
                              subject="Contract and note", note="Two documents, one fax.")
        register(intake, config=config, store=store, documents=spool)
        spool.registered([intake.id])
    drop = spool.layout.outgoing / "+4989765432"
    drop.mkdir()
    shutil.copy(samples / "scan.jpg", drop / "scan.jpg")
    outgoing = spool.layout.outgoing
    shutil.copy(samples / "logo.png", outgoing / "logo.png")
    shutil.copy(samples / "fax-g4.tif", outgoing / "fax-g4.tif")
    (outgoing / "order.fax").write_text(
        'to = "+1 212 555 8596"\nfiles = ["logo.png", "fax-g4.tif"]\n'
        'subject = "Order 4711"\nnote = "Logo and the signed order form."\n',
        encoding="utf-8",
    )


def run(config: Config) -> tuple[RunSummary, list[Job]]:
    """One run of the worker; what it did, and the job log after it."""
    worker = build_worker(config)
    try:
        summary = asyncio.run(worker.run_once())
        return summary, worker.store.list_jobs()
    finally:
        worker.close()
