"""The Graph answer table, the ``[transport]``/``[graph]`` settings and the Graph scopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from faxgw.app.wiring import make_transport
from faxgw.auth import make_provider
from faxgw.auth.msal_settings import graph_scopes
from faxgw.auth.oauth2 import OAuth2Provider
from faxgw.config import Config, config_from_dict
from faxgw.domain import codes
from faxgw.domain.disposition import Disposition
from faxgw.domain.errors import ConfigError
from faxgw.ports import Resource
from faxgw.transport.graph import (
    RULES,
    Answer,
    GraphTransport,
    classify_answer,
    parse_answer,
    translate_answer,
)
from faxgw.transport.graph.upload import CHUNK_BYTES, chunks
from faxgw.transport.smtp import SmtpTransport

NOW = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)


def _answer(status: int, code: str = "", message: str = "", **headers: str) -> Answer:
    body = json.dumps({"error": {"code": code, "message": message}}).encode() if code else b""
    return parse_answer(status, body, {k.replace("_", "-"): v for k, v in headers.items()},
                        now=NOW)


@pytest.mark.parametrize(
    ("status", "code", "message", "disposition", "faxgw_code"),
    [
        (202, "", "", Disposition.SENT, codes.SENT),
        (401, "InvalidAuthenticationToken", "expired", Disposition.AUTH, codes.SIGN_IN_AGAIN),
        (403, "ErrorAccessDenied", "Access is denied.", Disposition.AUTH,
         codes.CONSENT_MISSING),
        (403, "ErrorAccessDenied", "Access to OData is disabled.", Disposition.AUTH,
         codes.APP_ACCESS_POLICY),
        (403, "Authorization_RequestDenied", "Insufficient privileges", Disposition.AUTH,
         codes.CONSENT_MISSING),
        (403, "ErrorSendAsDenied", "no", Disposition.PERMANENT, codes.SEND_AS_DENIED),
        (403, "ErrorQuotaExceeded", "full", Disposition.PAUSE, codes.MAILBOX_FULL),
        (404, "ErrorInvalidUser", "invalid", Disposition.PERMANENT, codes.REJECTED),
        (404, "MailboxNotEnabledForRESTAPI", "x", Disposition.PERMANENT,
         codes.MAILBOX_NOT_ON_GRAPH),
        (413, "", "", Disposition.PERMANENT, codes.TOO_LARGE),
        (400, "ErrorMessageSizeExceeded", "big", Disposition.PERMANENT, codes.TOO_LARGE),
        (400, "ErrorMimeContentInvalidBase64String", "bad", Disposition.PERMANENT,
         codes.REJECTED),
        (429, "ApplicationThrottled", "slow", Disposition.WAIT, codes.TRY_LATER),
        (503, "", "", Disposition.WAIT, codes.TRY_LATER),
        (504, "", "", Disposition.WAIT, codes.TRY_LATER),
        (502, "", "", Disposition.RETRY, codes.TRY_LATER),
        (400, "ErrorInvalidRecipients", "bad", Disposition.PERMANENT, codes.REJECTED),
        (302, "", "", Disposition.RETRY, codes.TRY_LATER),
    ],
)
def test_every_answer_has_its_row(status: int, code: str, message: str,
                                  disposition: Disposition, faxgw_code: int) -> None:
    rule = classify_answer(_answer(status, code, message))
    assert (rule.disposition, rule.code) == (disposition, faxgw_code)


def test_every_row_names_an_existing_code_and_says_why() -> None:
    for rule in RULES:
        assert codes.describe(rule.code) and rule.why


def test_retry_after_in_seconds_or_as_a_date_and_30_s_when_missing_or_0() -> None:
    assert _answer(429, "x", "y", Retry_After="12").retry_after == 12
    assert _answer(429, "x", "y", Retry_After="Mon, 05 Jan 2026 12:01:30 GMT").retry_after == 90
    for headers in ({}, {"Retry_After": "0"}, {"Retry_After": "soon"}):
        error = translate_answer(_answer(429, "x", "y", **headers), stage="sendMail")
        assert error.retry_after == 30 and error.disposition is Disposition.WAIT


def test_the_reply_is_graphs_answer_and_the_request_id_is_kept() -> None:
    answer = _answer(403, "ErrorAccessDenied", "Access is denied.", request_id="abc")
    assert answer.reply == "403 ErrorAccessDenied: Access is denied."
    assert answer.request_id == "abc"
    error = translate_answer(answer, stage="draft", hint="needs Mail.ReadWrite")
    assert error.reply == answer.reply and "Mail.ReadWrite" in error.message
    throttled = translate_answer(_answer(429, "x", "y"), stage="draft", hint="Mail.ReadWrite")
    assert "Mail.ReadWrite" not in throttled.message


def test_upload_chunks_are_under_4_mb_in_order_and_cover_everything() -> None:
    assert CHUNK_BYTES < 4 * 1024 * 1024 and CHUNK_BYTES % (320 * 1024) == 0
    ranges = chunks(10_000_000)
    assert ranges[0][0] == 0 and ranges[-1][1] == 9_999_999
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:], strict=False))


# -- settings -----------------------------------------------------------------------------------


def _config(tmp_path: Path, **sections: dict[str, object]) -> Config:
    raw: dict[str, dict[str, object]] = {
        "auth": {"method": "oauth2", "client_id": "11111111-2222-3333-4444-555555555555",
                 "tenant": "contoso.onmicrosoft.com"},
        "transport": {"kind": "graph"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw, base=tmp_path)


@pytest.mark.parametrize(("cloud", "root", "authority"), [
    ("global", "https://graph.microsoft.com", "https://login.microsoftonline.com"),
    ("usgov", "https://graph.microsoft.us", "https://login.microsoftonline.us"),
    ("usgovdod", "https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    ("china", "https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
])
def test_the_cloud_sets_the_graph_root_and_the_token_scopes(
    tmp_path: Path, cloud: str, root: str, authority: str
) -> None:
    config = _config(tmp_path, graph={"cloud": cloud})
    assert (config.graph.root, config.graph.authority_host) == (root, authority)
    with OAuth2Provider(config) as provider:
        assert provider.scopes_for(Resource.GRAPH) == (f"{root}/Mail.Send",)
        assert provider.scopes_for(Resource.SMTP) == ("https://outlook.office.com/SMTP.Send",)
    assert graph_scopes(root, app_only=True) == (f"{root}/.default",)


def test_the_endpoint_overrides_the_root_but_not_the_scopes(tmp_path: Path) -> None:
    config = _config(tmp_path, graph={"endpoint": "https://localhost:8443/", "ca_file": "ca.pem"})
    assert config.graph.root == "https://localhost:8443"
    assert config.graph.resource == "https://graph.microsoft.com"
    assert config.graph.ca_file == tmp_path / "ca.pem"
    assert config.graph.save_to_sent_items is False


@pytest.mark.parametrize(("sections", "words"), [
    ({"graph": {"endpoint": "http://graph.example"}}, "https://"),
    ({"graph": {"cloud": "moon"}}, "cloud"),
    ({"transport": {"kind": "ews"}}, "kind"),
    ({"limits": {"connections": 5}}, "4 concurrent"),
])
def test_wrong_graph_settings_stop_with_the_key(
    tmp_path: Path, sections: dict[str, dict[str, object]], words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        _config(tmp_path, **sections)


def test_the_transport_kind_picks_the_adapter(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with OAuth2Provider(config) as provider:
        assert isinstance(make_transport(config, provider), GraphTransport)
        smtp = _config(tmp_path, transport={"kind": "smtp"})
        assert isinstance(make_transport(smtp, provider), SmtpTransport)
    password = _config(tmp_path, auth={"method": "password"})
    with pytest.raises(ConfigError, match="oauth2"):
        make_transport(password, make_provider(password))
