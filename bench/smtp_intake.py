"""The SMTP intake against dropped files: how fast each way takes the same one-page faxes.

* **smtp**: the SMTP intake (``faxgw.devices.serve_smtp``, aiosmtpd) in a thread of this
  process, as in ``faxgw run``; ``--clients`` threads are the devices, each sending its share
  of ``--messages`` messages (one PDF attached, one recipient) over one smtplib connection.
  Timed from the first connection to the last ``250``: each ``250`` means the job is in the
  spool (fsync), in the job store, rendered and pre-flighted, as ``faxgw submit`` does it.
* **drop**: the same documents dropped as files into ``outgoing/<number>/`` (outside the
  clock), then taken as ``faxgw run`` takes them (``Worker``'s intake: claim by rename,
  register, render in the worker's render pool of ``service_processes()`` processes).
  Nothing is sent in either run.

Usage::

    .venv/bin/python bench/smtp_intake.py [--messages N] [--clients C]
        [--document letter|scan] [--json]

Everything runs on 127.0.0.1 in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import functools
import json
import os
import shutil
import smtplib
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from faxgw.app.submit import submit  # noqa: E402
from faxgw.app.wiring import build_worker, store_open  # noqa: E402
from faxgw.config import Config, config_from_dict  # noqa: E402
from faxgw.devices import serve_smtp  # noqa: E402
from faxgw.domain.jobs import JobState  # noqa: E402
from faxgw.engine.outcomes import RunSummary  # noqa: E402
from faxgw.engine.renderpool import RenderPool, service_processes  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_pdf  # noqa: E402

DEVICE = "scanner@contoso.com"


def _config(folder: Path) -> Config:
    return config_from_dict({
        "spool": {"dir": str(folder / "spool"), "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        "smtp": {"sender": "fax@contoso.com", "host": "127.0.0.1", "port": 9},
        "intake": {"smtp": {"listen": "127.0.0.1:0", "domain": "fax.local",
                            "max_connections_per_client": 64,
                            "max_messages_per_connection": 100_000}},
    }, base=folder)


def _queued(config: Config) -> int:
    with store_open(config) as store:
        return sum(1 for job in store.list_jobs() if job.state is JobState.QUEUED)


def bench_smtp(folder: Path, document: Path, messages: int, clients: int, *,
               pool: bool) -> dict[str, Any]:
    """Messages per second taken by the SMTP intake from ``clients`` devices at once; with
    ``pool`` rendered in the service's warm render pool (as ``faxgw run`` does), else in a
    render process started for each message (as ``faxgw submit`` does)."""
    config = _config(folder)
    worker = build_worker(config, render_processes=service_processes()) if pool else None
    renderer = worker.render_pool if worker is not None else None
    if renderer is not None:
        renderer.warm()
    try:
        return _bench_smtp(config, document, messages, clients, renderer)
    finally:
        if worker is not None:
            worker.close()


def _bench_smtp(config: Config, document: Path, messages: int, clients: int,
                renderer: RenderPool | None) -> dict[str, Any]:
    ready = threading.Event()
    bound: list[tuple[str, int]] = []
    state: dict[str, Any] = {}

    async def serve() -> None:
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await serve_smtp(config, state["stop"],
                         functools.partial(submit, config, renderer=renderer),
                         on_listening=lambda address: (bound.append(address), ready.set()))

    server = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    server.start()
    if not ready.wait(60):
        raise SystemExit("the SMTP intake did not start")
    host, port = bound[0]
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = DEVICE, "004930123456@fax.local", "Scan"
    message.add_attachment(document.read_bytes(), maintype="application", subtype="pdf",
                           filename=document.name)
    data = message.as_bytes(policy=email.policy.SMTP)  # CRLF line ends, as on the wire
    shares = [messages // clients + (1 if n < messages % clients else 0) for n in range(clients)]
    refused: list[str] = []

    def device(count: int) -> None:
        with smtplib.SMTP(host, port, timeout=600) as client:
            for _ in range(count):
                try:
                    client.sendmail(DEVICE, ["004930123456@fax.local"], data)
                except smtplib.SMTPException as exc:
                    refused.append(str(exc))

    threads = [threading.Thread(target=device, args=(share,)) for share in shares if share]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    state["loop"].call_soon_threadsafe(state["stop"].set)
    server.join(60)
    queued = _queued(config)
    if refused:
        print(f"refused: {refused[0]}", file=sys.stderr)
    way = "smtp" if renderer is not None else "smtp, a render process per message"
    return {"way": way, "messages": messages, "clients": clients, "seconds": elapsed,
            "per_second": messages / elapsed, "queued": queued, "refused": len(refused)}


def bench_drop(folder: Path, document: Path, messages: int) -> dict[str, Any]:
    """Messages per second taken from ``outgoing/<number>/`` by the service's worker."""
    config = _config(folder)
    worker = build_worker(config, render_processes=service_processes())
    try:
        drop = worker.spool.layout.outgoing / "+4930123456"
        drop.mkdir(parents=True, exist_ok=True)
        for n in range(messages):
            shutil.copy(document, drop / f"scan-{n:05d}.pdf")
        past = time.time() - 60  # settled
        for entry in drop.iterdir():
            os.utime(entry, (past, past))
        if worker.render_pool is not None:
            worker.render_pool.warm()  # as faxgw run does at its start
        summary = RunSummary()

        async def take() -> None:
            # The worker's own intake step, without the sending that follows it in a round.
            await worker._take_intake_overlapped(summary, asyncio.Event())

        started = time.perf_counter()
        asyncio.run(take())
        elapsed = time.perf_counter() - started
    finally:
        worker.close()
    queued = _queued(config)
    return {"way": "drop into outgoing/<number>/", "messages": messages, "clients": 1,
            "seconds": elapsed, "per_second": messages / elapsed, "queued": queued,
            "refused": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--document", choices=["letter", "scan"], default="letter")
    parser.add_argument("--fresh", action="store_true",
                        help="also: the intake rendering in a process started per message")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faxgw-bench-") as temp:
        root = Path(temp)
        document = make_pdf(root / "page.pdf", args.document)
        size = document.stat().st_size
        for name in ("smtp", "fresh", "drop"):
            (root / name).mkdir()
        results = [bench_smtp(root / "smtp", document, args.messages, args.clients, pool=True),
                   bench_drop(root / "drop", document, args.messages)]
        if args.fresh:
            results.append(bench_smtp(root / "fresh", document, args.messages, args.clients,
                                      pool=False))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.messages} one-page faxes ({args.document}, {size} bytes "
          f"before MIME), {os.cpu_count()} cores")
    for result in results:
        print(f"  {result['way']:36s} {result['clients']:3d} client(s): "
              f"{result['seconds']:7.2f} s  {result['per_second']:7.1f} messages/s  "
              f"({result['queued']} queued, {result['refused']} refused)")


if __name__ == "__main__":
    main()
