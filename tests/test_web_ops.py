"""The operations endpoints beyond the job store: ``/readyz`` says whether the worker in the
same process finished a round recently (``faxgw run`` with ``[web] listen``) and leaves it
unchecked for ``faxgw web``; ``/metrics`` gives each signed-in account's token expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from faxgw.config import Config
from faxgw.testing.idp import LocalIdentityProvider
from faxgw.web.api import ROUND_LATE_SECONDS, worker_readiness
from faxgw.web.routes import WebState, create_app

from .test_oauth_delivery import OTHER
from .test_web_me import _client, send_as_me
from .test_web_me import app as app  # noqa: F401 - fixtures
from .test_web_me import config as config  # noqa: F401
from .test_web_me import idp as idp  # noqa: F401

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def test_worker_readiness_by_the_last_round() -> None:
    assert worker_readiness(None, NOW) == ("not checked", None)
    assert worker_readiness(lambda: None, NOW) == ("starting", None)
    recent = NOW - timedelta(seconds=5)
    assert worker_readiness(lambda: recent, NOW) == ("ok", recent)
    old = NOW - timedelta(seconds=ROUND_LATE_SECONDS + 1)
    assert worker_readiness(lambda: old, NOW) == ("late", old)


def _readyz(config: Config, last_round: object) -> tuple[int, dict[str, object]]:
    state = WebState(config, last_round=last_round)  # type: ignore[arg-type]
    try:
        with TestClient(create_app(config, state)) as client:
            answer = client.get("/readyz")
            return answer.status_code, answer.json()
    finally:
        state.close()


def test_readyz_checks_the_worker_beside_it(config: Config) -> None:  # noqa: F811
    status, body = _readyz(config, None)  # faxgw web: no worker in this process
    assert (status, body["worker"], body["ready"]) == (200, "not checked", True)
    status, body = _readyz(config, lambda: datetime.now(UTC))
    assert (status, body["worker"], body["store"]) == (200, "ok", "ok")
    assert str(body["last_round"]).startswith(str(datetime.now(UTC).year))
    status, body = _readyz(config, lambda: None)
    assert (status, body["worker"], body["ready"]) == (503, "starting", False)
    late = datetime.now(UTC) - timedelta(hours=1)
    status, body = _readyz(config, lambda: late)
    assert (status, body["worker"], body["ready"]) == (503, "late", False)


def test_metrics_give_each_accounts_token_expiry(
        app: object, config: Config, idp: LocalIdentityProvider,  # noqa: F811
        tmp_path: Path) -> None:
    client = _client(app)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert families["faxgw_token_expiry_seconds"].samples == []  # nobody signed in yet
    assert "Signed in as" in send_as_me(client, idp, OTHER)
    text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [sample] = families["faxgw_token_expiry_seconds"].samples
    assert sample.labels == {"account": OTHER}
    assert 0 < sample.value <= 24 * 3600


def test_metrics_have_no_token_expiry_without_oauth2(tmp_path: Path,
                                                     config: Config) -> None:  # noqa: F811
    plain = config.model_copy(update={"auth": config.auth.model_copy(
        update={"method": "none"})})
    state = WebState(plain)
    try:
        with TestClient(create_app(plain, state)) as client:
            text = client.get("/metrics").text
    finally:
        state.close()
    assert "faxgw_token_expiry_seconds" not in text
    assert "faxgw_jobs" in text
