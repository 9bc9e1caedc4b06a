"""An HTML-only body is read as text under the same ``body`` rule as a plain one: what a
person would see, never a script or a style, and nothing the markup points to is fetched.
The real listener, spool, store and render; smtplib as the device."""

from __future__ import annotations

import socket
from email.message import EmailMessage
from pathlib import Path

import pytest

from faxgw.app.wiring import open_spool, store_open
from faxgw.config import Config
from faxgw.devices.html_text import html_to_text
from faxgw.devices.message import read_letter
from faxgw.domain.jobs import Job, JobState
from faxgw.intake.checks import shown
from faxgw.testing.smtp_server import FaxSMTPServer

from .conftest import MakeConfig
from .test_smtp_intake import DEVICE, Listener, _intake_config

#: Where the markup's links, images and styles point: a socket that counts who connects.
HTML = """<!DOCTYPE html><html><head><title>Scan to email</title>
<style>p {{ color: red }} .x {{ display: none }}</style>
<link rel="stylesheet" href="http://127.0.0.1:{port}/style.css">
<script>document.write("not a note"); fetch("http://127.0.0.1:{port}/x")</script></head>
<body><p>Dear&nbsp;colleague,</p><p>please fax this <b>today</b> &amp; call
   back.</p><img src="http://127.0.0.1:{port}/pixel.png" alt="">
<table><tr><td>Order</td><td>4711</td></tr></table>
<p><a href="http://127.0.0.1:{port}/unsubscribe">Unsubscribe</a></p></body></html>"""
TEXT = "Dear colleague,\n\nplease fax this today & call back.\n\nOrder 4711\n\nUnsubscribe"


@pytest.fixture
def watcher() -> socket.socket:
    """A listening socket nothing should ever connect to."""
    listening = socket.create_server(("127.0.0.1", 0))
    listening.setblocking(False)
    return listening


def _html_message(markup: str, *attachments: Path) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Scanner 2F <{DEVICE}>"
    message["Subject"] = "Scan"
    message.set_content(markup, subtype="html")
    for path in attachments:
        message.add_attachment(path.read_bytes(), maintype="application", subtype="pdf",
                               filename=path.name)
    return message


def _jobs(config: Config) -> dict[str, Job]:
    with store_open(config) as store:
        return {job.number: job for job in store.list_jobs()}


def _nobody_connected(watcher: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        watcher.accept()


def test_an_html_only_body_is_the_note_or_the_page(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path, watcher: socket.socket
) -> None:
    markup = HTML.format(port=watcher.getsockname()[1])
    config = _intake_config(make_config, smtp_server)
    with Listener(config) as listener, listener.smtp() as client:
        # With an attachment: the note. Alone: a page of its own (body = "auto").
        client.send_message(_html_message(markup, samples / "letter.pdf"), DEVICE,
                            ["+4930123451@fax.local"])
        client.send_message(_html_message(markup), DEVICE, ["+4930123452@fax.local"])
    jobs = _jobs(config)
    noted, paged = jobs["+4930123451"], jobs["+4930123452"]
    # The job record shows the note's line breaks escaped, as for a plain body.
    assert (noted.state, noted.note, noted.documents) == (JobState.QUEUED, shown(TEXT),
                                                          ["letter.pdf"])
    assert (paged.state, paged.note, paged.documents) == (JobState.QUEUED, "",
                                                          ["message.txt"])
    page = open_spool(config).job_dir(paged.id) / "docs" / "message.txt"
    assert page.read_text(encoding="utf-8") == TEXT + "\n"
    assert paged.pages == 1
    _nobody_connected(watcher)
    watcher.close()


def test_an_html_only_body_follows_body_page_and_ignore(
    smtp_server: FaxSMTPServer, make_config: MakeConfig, samples: Path
) -> None:
    markup = "<p>Please call back.</p>"
    config = _intake_config(make_config, smtp_server, body="page")
    with Listener(config) as listener, listener.smtp() as client:
        client.send_message(_html_message(markup, samples / "letter.pdf"), DEVICE,
                            ["+4930123451@fax.local"])
    [job] = _jobs(config).values()
    assert job.documents == ["message.txt", "letter.pdf"] and job.note == ""

    ignore = _intake_config(make_config, smtp_server, body="ignore")
    with Listener(ignore) as listener, listener.smtp() as client:
        with pytest.raises(Exception) as refused:
            client.send_message(_html_message(markup), DEVICE, ["+4930123452@fax.local"])
    assert getattr(refused.value, "smtp_code", None) == 554
    assert b"Nothing to fax" in getattr(refused.value, "smtp_error", b"")
    assert "+4930123452" not in _jobs(ignore)


@pytest.mark.parametrize(("markup", "text"), [
    ("", ""),
    ("<script>alert(1)</script><style>b{}</style>", ""),
    ("<p>one<br>two<br/>three</p>", "one\ntwo\nthree"),
    ("<html><head><title>T</title><body>unclosed head", "unclosed head"),
    ("<p>broken <b>markup <i>here", "broken markup here"),
    ("<ul><li>a</li><li>b &lt;c&gt;</li></ul>", "a\nb <c>"),
    ("<p>wrapped\n   words</p><pre>kept\n  as is</pre>", "wrapped words\n\nkept\nas is"),
    ("<p>&#x1F4E0; fax &#0; end</p>", "\U0001F4E0 fax \ufffd end"),
], ids=["empty", "only-code", "breaks", "open-head", "broken", "list", "pre", "references"])
def test_html_text_keeps_what_a_person_sees(markup: str, text: str) -> None:
    assert html_to_text(markup) == text


def test_a_plain_body_wins_over_its_html_twin() -> None:
    message = EmailMessage()
    message.set_content("Plain words.")
    message.add_alternative("<p>HTML words.</p>", subtype="html")
    letter = read_letter(message.as_bytes())
    assert letter.text == "Plain words." and letter.documents == []
