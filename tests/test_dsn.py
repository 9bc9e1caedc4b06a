"""Bounces that name their job: SMTP DSN (RFC 3461) asked for where the server offers it.

The test server advertises DSN when told to and records the parameters each message came
with; the fax email then carries ``ENVID=faxgw.<job id>`` with ``RET=HDRS`` and
``NOTIFY=FAILURE,DELAY``, and a bounce that carries only that envelope id (no original
headers) finds its job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from faxgw.app.submit import submit
from faxgw.app.wiring import build_worker
from faxgw.config import ServiceConfig
from faxgw.confirm.classify import classify, report_rules
from faxgw.confirm.correlate import correlate
from faxgw.domain.reports import MatchedBy, Outcome
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.transport.smtp.session import xtext

from .conftest import PASSWORD, USER, MakeConfig


def _send_one(make_config: MakeConfig, server: FaxSMTPServer, samples: Path) -> str:
    config = make_config(server)
    job = submit(config, "+4930123456", [samples / "letter.pdf"])
    worker = build_worker(config)
    try:
        asyncio.run(worker.run_once())
    finally:
        worker.close()
    return job.id


@pytest.mark.parametrize("dsn", [True, False], ids=["server-offers-dsn", "server-does-not"])
def test_the_fax_email_asks_for_bounces_naming_its_job(make_config: MakeConfig,
                                                       samples: Path, dsn: bool) -> None:
    with FaxSMTPServer(users={USER: PASSWORD}, dsn=dsn) as server:
        job_id = _send_one(make_config, server, samples)
        [received] = server.messages
    if dsn:
        assert received.mail_parameters == ("RET=HDRS", f"ENVID=faxgw.{job_id}")
        assert received.rcpt_parameters == (("NOTIFY=FAILURE,DELAY",),)
    else:  # never a parameter the server did not offer (it would refuse the message: 555)
        assert received.mail_parameters == () and received.rcpt_parameters == ()


def test_a_bounce_with_only_the_envelope_id_finds_its_job() -> None:
    job = "0193a4f2c1d0-9f3b2a71"
    raw = (b"From: MAILER-DAEMON@mx.example.net\r\nTo: fax@contoso.com\r\n"
           b"Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
           b"--b\r\nContent-Type: text/plain\r\n\r\nThe message could not be delivered.\r\n"
           b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
           b"Reporting-MTA: dns; mx.example.net\r\nOriginal-Envelope-Id: faxgw." + job.encode()
           + b"\r\n\r\nFinal-Recipient: rfc822; +4930123456@fax.example.net\r\n"
           b"Action: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n")
    _, finding = classify(raw, report_rules(ServiceConfig()))
    assert finding.outcome is Outcome.FAILED
    assert correlate(finding, exists=lambda j: j == job, awaiting=lambda n: []) == (
        job, MatchedBy.ENVELOPE_ID)


def test_xtext_encodes_what_rfc_3461_names() -> None:
    assert xtext("faxgw.0193a4f2c1d0-9f3b2a71") == "faxgw.0193a4f2c1d0-9f3b2a71"
    assert xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d?"  # non-ASCII is never sent as is
