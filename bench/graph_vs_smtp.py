"""Graph against SMTP: the same fax jobs sent by each transport, side by side, in one run.

N one-page jobs are submitted once (copied in, registered, rendered and pre-flighted, as
``faxgw submit`` does) into a template spool, outside the clock. The template is copied once
per transport, so every transport sends the very same jobs (same ids, Message-IDs and
attachments). Each copy is then sent by one timed ``Worker.run_once()``:

* **smtp**: the local test SMTP server (aiosmtpd, STARTTLS, AUTH XOAUTH2 with tokens of the
  local identity provider), every reply ``--delay-ms`` late;
* **graph json**: the local Graph server, JSON ``sendMail`` (``save_to_sent_items = false``,
  the default), every reply ``--delay-ms`` late;
* **graph mime**: the same with MIME ``sendMail`` (``save_to_sent_items = true``).

Both servers and the identity provider run in threads of this process, as in the tests; one
device-code sign-in (for Graph; SMTP's token comes from its refresh token) serves every run.
``[limits] messages_per_minute = 0``, ``[limits] connections = C`` for every transport.

Usage::

    .venv/bin/python bench/graph_vs_smtp.py [--jobs N] [--delay-ms D] [--connections C]
        [--document letter|scan] [--repeat R] [--json]

Everything runs on 127.0.0.1 in a temporary folder, removed at the end. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(os.environ.get("FAXGW_BENCH_SRC") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from faxgw.app.submit import prepare  # noqa: E402
from faxgw.app.wiring import build_worker  # noqa: E402
from faxgw.auth.oauth2 import OAuth2Provider  # noqa: E402
from faxgw.config import Config, config_from_dict  # noqa: E402
from faxgw.domain.jobs import JobState  # noqa: E402
from faxgw.engine.renderpool import service_processes  # noqa: E402
from faxgw.intake.register import register  # noqa: E402
from faxgw.testing.graph_server import LocalGraph  # noqa: E402
from faxgw.testing.idp import LocalIdentityProvider  # noqa: E402
from faxgw.testing.smtp_server import FaxSMTPServer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_pdf  # noqa: E402

ACCOUNT = "fax@contoso.com"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
NUMBER = "+4930123456"
SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
#: The runs, in the order they are made within one round: (label, transport, save a copy).
RUNS = (("smtp", "smtp", False), ("graph json", "graph", False), ("graph mime", "graph", True))


class Peers:
    """The identity provider, the SMTP server and the Graph server, all with reply delay."""

    def __init__(self, workdir: Path, delay_ms: float) -> None:
        self.idp = LocalIdentityProvider(directory=workdir).start()
        self.idp.auto_approve_account = ACCOUNT
        self.idp.device_interval = 0
        self.smtp = FaxSMTPServer(tls="starttls", token_validator=self.idp.validate,
                                  reply_delay=delay_ms / 1000)
        self.smtp.start()
        self.graph = LocalGraph(self.idp.token_record, directory=workdir,
                                reply_delay_ms=delay_ms).start()

    def received(self, label: str) -> list[str]:
        """The Message-IDs the server behind ``label`` accepted so far."""
        if label == "smtp":
            return [str(m.message["Message-ID"]) for m in self.smtp.messages]
        form = "json" if label == "graph json" else "mime"
        return [str(m.message["Message-ID"]) for m in self.graph.messages if m.form == form]

    def close(self) -> None:
        self.graph.close()
        self.smtp.stop()
        self.idp.close()


def make_config(workdir: Path, spool: Path, peers: Peers, *, transport: str, save: bool,
                connections: int) -> Config:
    raw: dict[str, Any] = {
        "spool": {"dir": str(spool), "settle_seconds": 0},
        "service": {"address": "{e164}@fax.example.net", "region": "DE"},
        "smtp": {"host": peers.smtp.host, "port": peers.smtp.port,
                 "ca_file": str(peers.smtp.ca_file), "sender": ACCOUNT, "timeout_seconds": 60},
        "auth": {"method": "oauth2", "provider": "custom", "authority": peers.idp.authority,
                 "scopes": [SMTP_SCOPE], "client_id": CLIENT_ID, "account": ACCOUNT,
                 "ca_file": str(peers.idp.ca_file),
                 "token_cache": str(workdir / "state" / "tokens.json")},
        "transport": {"kind": transport},
        "graph": {"endpoint": peers.graph.base_url, "ca_file": str(peers.graph.ca_file),
                  "save_to_sent_items": save},
        "limits": {"messages_per_minute": 0, "connections": connections},
    }
    return config_from_dict(raw, base=workdir)


def sign_in(config: Config) -> None:
    """One device-code sign-in, approved by the identity provider at once."""
    with OAuth2Provider(config, poll_interval_override=0) as provider:
        provider.finish_device_flow(provider.start_device_flow(ACCOUNT))


def make_template(config: Config, document: Path, jobs: int) -> None:
    """N jobs submitted, rendered and pre-flighted into ``config``'s spool (not timed)."""
    worker = build_worker(config, render_processes=service_processes())
    try:
        if worker.render_pool is not None:
            worker.render_pool.wait_ready()
        for _ in range(jobs):
            intake = worker.spool.submit(NUMBER, [document])
            job = register(intake, config=config, store=worker.store, documents=worker.spool)
            if job.state is JobState.QUEUED:
                prepare(worker.store, worker.spool, config, job, renderer=worker.render_pool)
    finally:
        worker.close()


def send_all(config: Config) -> tuple[float, int]:
    """One timed ``run_once`` over the copied spool: seconds, jobs sent."""
    worker = build_worker(config, render_processes=service_processes())
    try:
        if worker.render_pool is not None:
            # A running service's render processes have started with it: not timed.
            worker.render_pool.wait_ready()
        start = time.perf_counter()
        summary = asyncio.run(worker.run_once())
        return time.perf_counter() - start, summary.sent
    finally:
        worker.close()


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    peers = Peers(workdir, args.delay_ms)
    try:
        template = workdir / "template"
        base = make_config(workdir, template, peers, transport="graph", save=False,
                           connections=args.connections)
        sign_in(base)  # for Graph (kind = "graph"); SMTP's token comes from its refresh
        document = make_pdf(workdir / "page.pdf", args.document)
        make_template(base, document, args.jobs)
        seconds: dict[str, list[float]] = {label: [] for label, _, _ in RUNS}
        ids: dict[str, set[str]] = {}
        for round_number in range(args.repeat):
            for label, transport, save in RUNS:
                spool = workdir / f"{label.replace(' ', '-')}-{round_number}"
                shutil.copytree(template, spool)
                config = make_config(workdir, spool, peers, transport=transport, save=save,
                                     connections=args.connections)
                before = set(peers.received(label))
                elapsed, sent = send_all(config)
                if sent != args.jobs:
                    raise SystemExit(f"{label}: {sent} of {args.jobs} jobs sent")
                ids[label] = set(peers.received(label)) - before
                seconds[label].append(elapsed)
                shutil.rmtree(spool)
        # The same jobs: every transport delivered the same Message-IDs.
        same = len({frozenset(found) for found in ids.values()}) == 1
    finally:
        peers.close()
    median = {label: statistics.median(values) for label, values in seconds.items()}
    rate = {label: args.jobs / value for label, value in median.items()}
    return {
        "jobs": args.jobs, "delay_ms": args.delay_ms, "connections": args.connections,
        "document": args.document, "repeat": args.repeat,
        "seconds": seconds, "jobs_per_second": rate,
        "ratio_to_smtp": {label: rate[label] / rate["smtp"] for label in rate},
        "same_message_ids": same,
    }


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['jobs']} jobs ({result['document']}), replies {result['delay_ms']:g} ms "
             f"late, {result['connections']} sessions per mailbox, median of "
             f"{result['repeat']} run(s)", ""]
    lines.append(f"{'transport':<12} {'seconds':>9} {'jobs/s':>9} {'× smtp':>8}")
    for label, rate in result["jobs_per_second"].items():
        median = statistics.median(result["seconds"][label])
        lines.append(f"{label:<12} {median:>9.2f} {rate:>9.1f} "
                     f"{result['ratio_to_smtp'][label]:>8.2f}")
    lines.append("")
    lines.append("same jobs, same Message-IDs at every server: "
                 + ("yes" if result["same_message_ids"] else "NO"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=3,
                        help="[limits] connections (Graph allows at most 4)")
    parser.add_argument("--document", choices=("letter", "scan"), default="scan")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="faxgw-bench-graph-"))
    try:
        result = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
