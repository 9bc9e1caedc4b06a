"""Secrets in library log lines are scrubbed; everything else is left as it was."""

from __future__ import annotations

import logging

import pytest

from faxgw.redact import SecretFilter, redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"code": "DAQABAAEAAAD", "scope": "x"}', '{"code": "***", "scope": "x"}'),
        ("{'device_code': 'Zk9v', 'interval': 5}", "{'device_code': '***', 'interval': 5}"),
        ("grant_type=refresh_token&refresh_token=0.AX4A&client_id=c",
         "grant_type=refresh_token&refresh_token=***&client_id=c"),
        ('"access_token": "eyJ0eXAi"', '"access_token": "***"'),
        ("client_secret=s3cr3t; next", "client_secret=***; next"),
        # Not secrets: numbers, lists of error codes, other names that end in "code".
        ("{'code': 412}", "{'code': 412}"),
        ('"error_codes": [7000218]', '"error_codes": [7000218]'),
        ("zipcode=10115 postcode=1", "zipcode=10115 postcode=1"),
        ("← job sent (250 2.0.0 OK)", "← job sent (250 2.0.0 OK)"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_filter_scrubs_formatted_records(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("msal.test")
    caplog.handler.addFilter(SecretFilter())
    with caplog.at_level(logging.DEBUG):
        log.debug("event=%s", {"data": {"code": "device-code-value"}})
        log.debug("plain %s", "text")
    assert "device-code-value" not in caplog.text
    assert "'code': '***'" in caplog.text and "plain text" in caplog.text
