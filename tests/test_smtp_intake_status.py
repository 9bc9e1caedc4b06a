"""``faxgw status`` and the web console show the SMTP intake: its address, TLS and AUTH, and
what it has done (connections, messages accepted and refused), read from the file the
listener of a real ``faxgw run`` keeps, while it runs and after it stopped."""

from __future__ import annotations

import smtplib
import stat
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from faxgw.devices.activity import activity_path
from faxgw.testing.smtp_server import FaxSMTPServer
from faxgw.web import credentials
from faxgw.web.routes import create_app

from .test_smtp_intake import DEVICE, _message
from .test_smtp_intake_crash import Gateway, _wait
from .test_web import ADMIN, log_in

pytestmark = pytest.mark.slow


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    return Gateway(tmp_path)


def test_status_shows_the_listener_and_its_counts(
    gateway: Gateway, smtp_server: FaxSMTPServer, samples: Path
) -> None:
    gateway.configure(smtp_server.host, smtp_server.port, smtp_server.ca_file,
                      "max_connections_per_client = 1\nmax_message_bytes = 100000\n")
    before = gateway.command("status")
    assert before.returncode == 0, before.stderr
    assert (f"SMTP intake: not started yet (127.0.0.1:{gateway.port}) for <number>@fax.local, "
            "STARTTLS off, AUTH none") in before.stdout
    gateway.start()
    try:
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPConnectError):  # a second one from this address
                smtplib.SMTP("127.0.0.1", gateway.port, timeout=30)
            client.ehlo()
            client.mail(DEVICE)
            assert client.rcpt("+4930123456@example.com")[0] == 550
            client.rset()
            message = _message("", (samples / "letter.pdf", "application", "pdf"))
            assert client.send_message(message, DEVICE, ["+4930123456@fax.local"]) == {}
            with pytest.raises(smtplib.SMTPDataError):  # nothing to fax: refused
                client.send_message(_message(""), DEVICE, ["+4930123456@fax.local"])
            with pytest.raises(smtplib.SMTPSenderRefused):  # SIZE over the limit: 552
                client.send_message(_message("", (samples / "scan.jpg", "image", "jpeg")),
                                    DEVICE, ["+4930123456@fax.local"])

        def counted() -> bool:
            now = gateway.intake_status()
            return now["messages_accepted"] == 1 and now["messages_refused"] == 2
        _wait(counted, "the counts in faxgw status", gateway)
        running = gateway.intake_status()
        text = gateway.command("status").stdout
    finally:
        gateway.stop()
    assert running["state"] == "listening"
    assert running["address"] == f"127.0.0.1:{gateway.port}"
    assert (running["tls"], running["auth"], running["domain"]) == ("off", "none", "fax.local")
    # The probe that waited for the greeting, and the client (the second one was refused).
    assert (running["connections"], running["connections_refused"]) == (2, 1)
    assert running["recipients_refused"] == 1
    assert f"SMTP intake: listening on 127.0.0.1:{gateway.port} for <number>@fax.local" in text
    assert "2 connection(s) (1 refused), 1 message(s) accepted, 2 refused, 1 recipient(s)" \
        in text

    stopped = gateway.intake_status()
    assert stopped["state"] == "stopped"
    assert stopped["messages_accepted"] == 1 and stopped["connections"] == 2
    path = activity_path(gateway.config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DEVICE not in path.read_text()  # counts only: no address a message named

    # The web console's Email server page shows the same.
    config = gateway.config
    credentials.set_password(config.web.admin_password_file, ADMIN)
    app = create_app(config)
    try:
        client = TestClient(app, follow_redirects=False)
        log_in(client)
        page = client.get("/server").text
    finally:
        app.state.web.close()
    assert "Devices (SMTP intake)" in page
    for row in ("<th scope=\"row\">State</th><td>stopped</td>",
                f"<td>127.0.0.1:{gateway.port}</td>",
                "<th scope=\"row\">Messages accepted</th><td>1</td>",
                "<th scope=\"row\">Messages refused</th><td>2</td>",
                "<td>2 (1 refused at connect)</td>"):
        assert row in page, row


def test_status_leaves_the_intake_out_when_it_is_off(
    gateway: Gateway, smtp_server: FaxSMTPServer
) -> None:
    gateway.configure(smtp_server.host, smtp_server.port, smtp_server.ca_file)
    gateway.config_file.write_text(gateway.config_file.read_text().replace(
        f'listen = "127.0.0.1:{gateway.port}"', 'listen = ""'))
    done = gateway.command("status", "--json")
    assert done.returncode == 0, done.stderr
    assert '"smtp_intake": null' in done.stdout
    assert "SMTP intake" not in gateway.command("status").stdout
