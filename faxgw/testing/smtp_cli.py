"""Command line for the test SMTP server: ``python -m faxgw.testing.smtp_server``.

For humans and the demo: prints the port and the CA file, then one line per message
received, until Ctrl-C or SIGTERM::

    python -m faxgw.testing.smtp_server --port 2525 --maildir out/ --user fax:secret
"""

from __future__ import annotations

import argparse
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from faxgw.testing.smtp_protocol import TokenValidator
from faxgw.testing.smtp_server import FaxSMTPServer

__all__ = ["main"]


def _parse_user(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME:PASSWORD")
    return name, password


def _accept_token(expected: str) -> TokenValidator:
    """A validator that accepts ``expected`` for any user (for the demo)."""

    def validate(user: str, token: str) -> bool:
        return token == expected

    return validate


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run a server until Ctrl-C, printing its port, CA file and each message received."""
    parser = argparse.ArgumentParser(
        prog="python -m faxgw.testing.smtp_server",
        description="Exchange-like SMTP test server with STARTTLS (trustme CA).",
    )
    parser.add_argument("--port", type=int, default=2525, help="TCP port (0: any free port)")
    parser.add_argument("--maildir", type=Path, help="write each message to DIR/<n>.eml")
    parser.add_argument("--tls", choices=["starttls", "tls", "none"], default="starttls")
    parser.add_argument(
        "--user",
        type=_parse_user,
        action="append",
        default=[],
        metavar="NAME:PASS",
        help="accept PLAIN/LOGIN for this account (repeatable)",
    )
    parser.add_argument(
        "--token",
        help="accept XOAUTH2 for any user presenting this bearer token",
    )
    parser.add_argument("--reply-delay", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="do not advertise PIPELINING (RFC 2920)")
    parser.add_argument("--ca-out", type=Path, help="also copy the CA certificate (PEM) here")
    args = parser.parse_args(argv)

    server = FaxSMTPServer(
        tls=args.tls,
        users=dict(args.user) or None,
        token_validator=_accept_token(args.token) if args.token is not None else None,
        reply_delay=args.reply_delay,
        pipelining=not args.no_pipelining,
        maildir=args.maildir,
        port=args.port,
    )
    # Stop cleanly on SIGTERM too (a demo script or a supervisor), as on Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    with server:
        if args.ca_out is not None:
            shutil.copyfile(server.ca_file, args.ca_out)
        print(f"listening on {server.host}:{server.port} (tls={server.tls})", flush=True)
        print(f"CA file: {args.ca_out or server.ca_file}", flush=True)
        shown = 0
        try:
            while True:
                time.sleep(0.25)
                for received in server.messages[shown:]:
                    shown += 1
                    print(
                        f"message {shown}: {received.mail_from} -> {', '.join(received.rcpt_tos)}"
                        f" ({len(received.data)} bytes, user={received.auth_user})",
                        flush=True,
                    )
        except KeyboardInterrupt:
            print("stopped", flush=True)
    return 0
