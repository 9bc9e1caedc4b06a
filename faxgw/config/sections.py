"""The configuration's sections: one model per ``[section]``, every key checked.

A misspelt key stops the gateway (``extra="forbid"``); values are checked as they are read,
with one message naming the key and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from ..domain.errors import ConfigError
from .base import ListenAddress, OptionalPath, Section
from .confirm import InboxConfig, NotifyConfig
from .devices import IntakeSmtpConfig
from .service import ServiceConfig
from .store import StoreConfig
from .values import is_loopback, parse_duration, split_listen

PASSWORD_ENV = "FAXGW_SMTP_PASSWORD"
CLIENT_SECRET_ENV = "FAXGW_CLIENT_SECRET"
CLIENT_CERTIFICATE_PASSWORD_ENV = "FAXGW_CLIENT_CERTIFICATE_PASSWORD"



class SpoolConfig(Section):
    """``[spool]``: where jobs are dropped and kept."""

    dir: Path = Path("../spool")
    settle_seconds: Annotated[float, Field(ge=0)] = 2.0
    #: A group that may read what the gateway keeps (files 0640, folders 0750); "" = none
    #: (files 0600, folders 0700).
    group: str = ""


class IntakeConfig(Section):
    """``[intake]``: who a dropped or submitted job may name as its sender."""

    #: Exact addresses or ``@domain``; empty: a job may name no sender of its own (the
    #: configured mailbox sends).
    allowed_senders: list[str] = Field(default_factory=list)
    #: ``[intake.smtp]``: the SMTP listener for devices.
    smtp: IntakeSmtpConfig = IntakeSmtpConfig()

    @field_validator("allowed_senders")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            local, at, domain = entry.strip().rpartition("@")
            if not at or not domain or "." not in domain or any(c.isspace() for c in entry):
                raise ValueError(f"{entry!r} is neither an address nor @domain")
        return [entry.strip().lower() for entry in value]


class NumbersConfig(Section):
    """``[numbers]``: which fax numbers may be dialled, and how they are shown in logs."""

    allow: list[str] = Field(default_factory=list)
    #: None: the built-in deny list (emergency and premium-rate numbers) for the region.
    deny: list[str] | None = None
    mask_digits: Annotated[int, Field(ge=0)] = 0


class SmtpConfig(Section):
    """``[smtp]``: the mail server faxgw submits to."""

    host: str = "smtp.office365.com"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    verify_certificate: bool = True
    ca_file: OptionalPath = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    sender: str = "fax@contoso.com"
    #: The server's message size limit, measured after encoding (Exchange Online: 35 MB);
    #: 0 means none.
    max_message_bytes: Annotated[int, Field(ge=0)] = 35 * 1024 * 1024

    @field_validator("sender")
    @classmethod
    def _sender_is_address(cls, value: str) -> str:
        if "@" not in value or value.startswith("@") or value.endswith("@"):
            raise ValueError("must be an email address")
        return value


#: The national clouds: each one's Microsoft Graph root (also the resource its token scopes
#: name) and the sign-in host that fits it ([auth] authority = "<host>/<tenant>").
GRAPH_CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("https://graph.microsoft.com", "https://login.microsoftonline.com"),
    "usgov": ("https://graph.microsoft.us", "https://login.microsoftonline.us"),
    "usgovdod": ("https://dod-graph.microsoft.us", "https://login.microsoftonline.us"),
    "china": ("https://microsoftgraph.chinacloudapi.cn", "https://login.chinacloudapi.cn"),
}


#: Graph's limit of concurrent requests per mailbox (each session sends one at a time).
GRAPH_MAX_CONCURRENCY = 4


class TransportConfig(Section):
    """``[transport]``: how fax emails leave the gateway."""

    kind: Literal["smtp", "graph"] = "smtp"


class GraphConfig(Section):
    """``[graph]``: Microsoft Graph ``sendMail`` (``[transport] kind = "graph"``)."""

    cloud: Literal["global", "usgov", "usgovdod", "china"] = "global"
    #: Overrides the cloud's Graph root (tests, proxies); "" = the cloud's.
    endpoint: str = ""
    ca_file: OptionalPath = None
    save_to_sent_items: bool = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint_https(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError("must start with https:// (tokens never cross a plain connection)")
        return value.rstrip("/")

    @property
    def resource(self) -> str:
        """The cloud's Graph root: what token scopes name (never the ``endpoint`` override)."""
        return GRAPH_CLOUDS[self.cloud][0]

    @property
    def root(self) -> str:
        """Where requests go: ``endpoint`` when set, else the cloud's Graph root."""
        return self.endpoint or self.resource

    @property
    def authority_host(self) -> str:
        """The sign-in host that fits the cloud (for ``[auth] authority``)."""
        return GRAPH_CLOUDS[self.cloud][1]


class AuthConfig(Section):
    """``[auth]``: how faxgw signs in to the mail server."""

    method: Literal["none", "password", "oauth2"] = "none"
    username: str = ""
    password_file: OptionalPath = None
    # OAuth2 (Exchange Online, Outlook.com, or a custom identity provider).
    provider: Literal["exchange-online", "outlook", "custom"] = "exchange-online"
    tenant: str = "organizations"
    client_id: str = ""
    flow: Literal["device_code", "client_credentials"] = "device_code"
    account: str = ""
    client_secret_file: OptionalPath = None
    #: ``client_credentials`` with a certificate: one PEM file (private key and certificate)
    #: or a PKCS#12 file (.pfx, .p12).
    client_certificate_file: OptionalPath = None
    #: The password of an encrypted key or PKCS#12 file (or FAXGW_CLIENT_CERTIFICATE_PASSWORD).
    client_certificate_password_file: OptionalPath = None
    authority: str = ""
    ca_file: OptionalPath = None
    #: Outside the spool (users write into the spool's outgoing/; the tokens are the keys to
    #: the mailbox).
    token_cache: Path = Path("../state/tokens.json")
    scopes: list[str] = Field(default_factory=list)
    keepalive_days: Annotated[float, Field(gt=0)] = 7.0
    http_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("authority")
    @classmethod
    def _authority_https(cls, value: str) -> str:
        # msal refuses any authority that is not https://host/<tenant>.
        if value and not value.startswith("https://"):
            raise ValueError("must start with https:// (msal accepts no other scheme)")
        return value.rstrip("/")


class WebConfig(Section):
    """``[web]``: the web console (``faxgw web``, and ``faxgw run`` when ``listen`` is set)."""

    #: ``host:port``; "" = no console in ``faxgw run``.
    listen: ListenAddress = ""
    #: The admin password's argon2 hash, written by ``faxgw web password`` (mode 0600).
    admin_password_file: Path = Path("../state/web-password")
    #: TLS: required when ``listen`` is not a loopback address.
    certificate_file: OptionalPath = None
    key_file: OptionalPath = None
    #: Hashed bearer tokens for ``/api``, written by ``faxgw web token``.
    api_token_file: Path = Path("../state/web-tokens")
    #: Who may use "send as me" (mail domains).
    user_domains: list[str] = Field(default_factory=list)

    @field_validator("user_domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "." not in entry or "@" in entry or any(c.isspace() for c in entry):
                raise ValueError(f"{entry!r} is not a mail domain such as contoso.com")
        return [entry.lower() for entry in value]

    @model_validator(mode="after")
    def _tls_off_loopback(self) -> WebConfig:
        if (self.certificate_file is None) != (self.key_file is None):
            raise ValueError("certificate_file and key_file: give both (TLS) or neither")
        if self.listen and not is_loopback(split_listen(self.listen)[0]) \
                and self.certificate_file is None:
            raise ValueError(f"listen: {self.listen!r} is not a loopback address: the console "
                             "then needs TLS (certificate_file and key_file) and an admin "
                             "password (admin_password_file, set by 'faxgw web password')")
        return self


class RetryConfig(Section):
    """``[retry]``: when a job that could not be sent is tried again, and when to give up."""

    backoff: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = Field(
        default_factory=lambda: [60.0, 300.0, 900.0, 1800.0, 3600.0]
    )
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    max_attempts: Annotated[int, Field(ge=1)] = 10
    max_age: float = 24 * 3600.0

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class LimitsConfig(Section):
    """``[limits]``: per sending mailbox pacing, and how long finished jobs are kept."""

    messages_per_minute: Annotated[int, Field(ge=0)] = 30
    connections: Annotated[int, Field(ge=1)] = 3
    retention: float = 30 * 86400.0
    #: The largest file taken as a document; larger ones are refused unread (code 413).
    max_input_bytes: Annotated[int, Field(ge=1)] = 50 * 1024 * 1024
    #: How long one job's rendering may take before its render process is stopped.
    render_seconds: float = 120.0

    @field_validator("retention", "render_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class Config(Section):
    """The whole validated configuration."""

    spool: SpoolConfig = SpoolConfig()
    service: ServiceConfig = ServiceConfig()
    numbers: NumbersConfig = NumbersConfig()
    smtp: SmtpConfig = SmtpConfig()
    auth: AuthConfig = AuthConfig()
    retry: RetryConfig = RetryConfig()
    limits: LimitsConfig = LimitsConfig()
    intake: IntakeConfig = IntakeConfig()
    web: WebConfig = WebConfig()
    transport: TransportConfig = TransportConfig()
    graph: GraphConfig = GraphConfig()
    inbox: InboxConfig = InboxConfig()
    notify: NotifyConfig = NotifyConfig()
    store: StoreConfig = StoreConfig()
    #: The file this configuration was read from (None when built in code).
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _no_credentials_in_clear(self) -> Config:
        if self.smtp.security == "none" and self.auth.method != "none":
            raise ValueError(
                '[smtp] security: "none" would send credentials in clear text; use '
                '"starttls" or "tls", or [auth] method = "none"'
            )
        return self

    @model_validator(mode="after")
    def _graph_concurrency(self) -> Config:
        if self.transport.kind == "graph" and self.limits.connections > GRAPH_MAX_CONCURRENCY:
            raise ValueError(
                f"[limits] connections: Graph allows {GRAPH_MAX_CONCURRENCY} concurrent requests "
                f"per mailbox; {self.limits.connections} would be refused "
                f'([transport] kind = "graph")')
        return self

    @property
    def spool_dir(self) -> Path:
        """The spool root, absolute."""
        return self.spool.dir

    def smtp_password(self) -> str:
        """The SMTP password from ``FAXGW_SMTP_PASSWORD`` or ``[auth] password_file``.

        Read on demand so that the secret is never part of the config object's repr.
        """
        from_env = os.environ.get(PASSWORD_ENV)
        if from_env:
            return from_env
        if self.auth.password_file is None:
            raise ConfigError(
                f'[auth] password_file: method is "password" but neither password_file nor '
                f"{PASSWORD_ENV} is set"
            )
        try:
            return self.auth.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"[auth] password_file: cannot read {self.auth.password_file}: {exc.strerror}"
            ) from None
