"""Reading the gateway's state: the job log, one job's history, the codes, the status sheet,
the service profiles. Nothing here changes anything."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..domain import codes
from ..domain.errors import ConfigError
from ..domain.jobs import HistoryEvent, Job, JobState
from ..domain.reports import Report
from ..fax.profiles import PROFILES, Profile, ServiceRules, rules_for
from ..intake.register import default_sender
from ..ports import ReportStore
from .signin import sign_in_summary
from .wiring import store_open, store_status

__all__ = ["JobDetail", "ProfileListing", "all_codes", "job_detail", "list_jobs", "profiles",
           "status_sheet"]


def list_jobs(config: Config, states: Iterable[JobState] | None = None,
              limit: int | None = None) -> list[Job]:
    """The job log, newest first, optionally only jobs in ``states``."""
    with store_open(config) as store:
        return store.list_jobs(states, limit)


@dataclass(frozen=True, slots=True)
class JobDetail:
    """One job with its whole history, and its code's words."""

    job: Job
    history: list[HistoryEvent]
    code: codes.StatusCode | None
    #: What the fax service and the mail server reported about it, newest first.
    reports: list[Report] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The job and its history, as ``faxgw show --json`` prints them."""
        data = self.job.to_json()
        data["history"] = [event.to_json() for event in self.history]
        data["reports"] = [report.to_json() for report in self.reports]
        return data


def job_detail(config: Config, job_id: str) -> JobDetail:
    """One job (by id or a unique prefix) with its history; raises JobNotFoundError."""
    with store_open(config) as store:
        job = store.get(job_id)
        history = store.history(job.id)
        reports = store.reports(job_id=job.id) if isinstance(store, ReportStore) else []
    return JobDetail(job, history, codes.CODES.get(job.code) if job.code is not None else None,
                     reports)


def all_codes() -> tuple[codes.StatusCode, ...]:
    """Every job status code with its meaning and solution."""
    return codes.all_codes()


def secret_file_warnings(config: Config) -> list[str]:
    """A warning for each secret file (``[auth]`` password, client secret, certificate and its
    password, the token cache) that accounts other than the gateway's can read."""
    auth = config.auth
    files: list[tuple[str, Path | None]] = [
        ("[auth] password_file", auth.password_file),
        ("[auth] client_secret_file", auth.client_secret_file),
        ("[auth] client_certificate_file", auth.client_certificate_file),
        ("[auth] client_certificate_password_file", auth.client_certificate_password_file),
        ("the token cache ([auth] token_cache)", auth.token_cache),
    ]
    warnings = []
    for label, path in files:
        if path is None:
            continue
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue  # a missing file is another message's matter
        readers = [who for who, bit in (("its group", stat.S_IRGRP), ("all users", stat.S_IROTH))
                   if mode & bit]
        if readers:
            warnings.append(f"{label} {path} can be read by {' and '.join(readers)} (mode "
                            f"{mode:04o}): chmod 600 {path}")
    return warnings


def status_sheet(config: Config) -> dict[str, Any]:
    """The status sheet: service, mail server, sign-in and queue counts (``faxgw status``),
    and ``warnings``: secret files others can read."""
    with store_open(config) as store:
        counts = store.counts()
        database = store_status(config, store)
    return {
        "config": str(config.source) if config.source else None,
        "spool": str(config.spool.dir),
        "profile": config.service.profile,
        "service_address": rules_for(config.service).address,
        "region": config.service.region,
        "paper": config.service.paper,
        "transport": config.transport.kind,
        "graph_endpoint": config.graph.root if config.transport.kind == "graph" else None,
        "smtp_host": config.smtp.host,
        "smtp_port": config.smtp.port,
        "security": config.smtp.security,
        "certificate_validation": config.smtp.verify_certificate,
        "auth_method": config.auth.method,
        "account": default_sender(config),
        "sign_in": sign_in_summary(config),
        "queue": {state.value: count for state, count in counts.items()},
        "store": database,
        "smtp_intake": _smtp_intake(config),
        "warnings": secret_file_warnings(config),
    }


def _smtp_intake(config: Config) -> dict[str, Any] | None:
    """The SMTP intake's part of the sheet; None when it is off (then aiosmtpd, which the
    devices package loads, is not loaded for the sheet either)."""
    if not config.intake.smtp.listen:
        return None
    from .devices import listener_status

    return listener_status(config)


@dataclass(frozen=True, slots=True)
class ProfileListing:
    """The built-in profiles, and the active one's rules (None when the configuration cannot
    be used: ``problem`` says why)."""

    profiles: tuple[Profile, ...]
    active: ServiceRules | None
    problem: str | None = None


def profiles(config: Config | None, problem: str | None = None) -> ProfileListing:
    """The built-in service profiles, marking the one ``config`` uses."""
    if config is None:
        return ProfileListing(tuple(PROFILES.values()), None, problem)
    try:
        rules = rules_for(config.service)
    except ConfigError as exc:
        return ProfileListing(tuple(PROFILES.values()), None, str(exc))
    return ProfileListing(tuple(PROFILES.values()), rules)
