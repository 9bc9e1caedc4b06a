"""Validated settings, loaded from one TOML file.

The file is found by ``--config PATH``, else ``FAXGW_CONFIG``, else ``config/faxgw.toml``.
Every key is checked when the file is loaded; a wrong key, type or value stops with one
message naming the key and the problem. Relative paths resolve against the config file's
folder, so a config works wherever the gateway is started from.

Secrets never live only inline: the SMTP password comes from ``[auth] password_file`` or the
``FAXGW_SMTP_PASSWORD`` environment variable, and is read only when a connection needs it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .domain.errors import ConfigError

DEFAULT_CONFIG = Path("config/faxgw.toml")
CONFIG_ENV = "FAXGW_CONFIG"
PASSWORD_ENV = "FAXGW_SMTP_PASSWORD"
CLIENT_SECRET_ENV = "FAXGW_CLIENT_SECRET"
CLIENT_CERTIFICATE_PASSWORD_ENV = "FAXGW_CLIENT_CERTIFICATE_PASSWORD"

#: What a provider preset fills in for ``[smtp]`` when the user did not set it.
PROVIDER_SMTP: dict[str, dict[str, Any]] = {
    "exchange-online": {"host": "smtp.office365.com", "port": 587, "security": "starttls"},
    "outlook": {"host": "smtp-mail.outlook.com", "port": 587, "security": "starttls"},
}


class _Section(BaseModel):
    # A misspelt key must stop the gateway, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpoolConfig(_Section):
    """``[spool]``: where jobs are dropped and kept."""

    dir: Path = Path("../spool")
    settle_seconds: Annotated[float, Field(ge=0)] = 2.0
    #: A group that may read what the gateway keeps (files 0640, folders 0750); "" = none
    #: (files 0600, folders 0700).
    group: str = ""


class IntakeConfig(_Section):
    """``[intake]``: who a dropped or submitted job may name as its sender."""

    #: Exact addresses or ``@domain``; empty: a job may name no sender of its own (the
    #: configured mailbox sends).
    allowed_senders: list[str] = Field(default_factory=list)

    @field_validator("allowed_senders")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            local, at, domain = entry.strip().rpartition("@")
            if not at or not domain or "." not in domain or any(c.isspace() for c in entry):
                raise ValueError(f"{entry!r} is neither an address nor @domain")
        return [entry.strip().lower() for entry in value]


def _check_template(template: str, known: str, **example: str) -> None:
    """Fail now, not when the first fax is sent, on a placeholder that cannot be filled."""
    try:
        template.format(**example)
    except KeyError as exc:
        raise ValueError(f"unknown placeholder {{{exc.args[0]}}}; use {known}") from None
    except (IndexError, ValueError) as exc:
        # "{}" or "{0}", an unmatched brace: write a literal brace as {{ or }}
        raise ValueError(f"is not a valid template ({exc}); use {known}, "
                         "and {{ or }} for a brace") from None


class ServiceConfig(_Section):
    """``[service]``: the Internet fax service that receives faxes by email.

    ``profile`` names a built-in service profile; every key left unset here takes the
    profile's value (see ``faxgw profiles``).
    """

    profile: str = "generic"
    address: str = "{e164}@fax.example.net"
    region: str = "DE"
    paper: Literal["A4", "Letter"] = "A4"
    subject: str = "Fax to {number}"
    attach_as: Literal["pdf", "tiff"] | None = None
    tiff_compression: Literal["group4", "group3"] | None = None
    max_pages: Annotated[int, Field(ge=1)] | None = None
    #: Largest attachment in bytes before encoding; 0 means no limit of faxgw's own.
    max_attachment_bytes: Annotated[int, Field(ge=0)] | None = None
    max_subject_chars: Annotated[int, Field(ge=1)] | None = None
    body: bool | None = None
    cover: bool | None = None
    cover_template: Path | None = None

    @field_validator("cover_template", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("address")
    @classmethod
    def _address_has_number(cls, value: str) -> str:
        if not any(f"{{{name}}}" in value for name in ("e164", "digits", "national")):
            raise ValueError("must contain {e164}, {digits} or {national}")
        if "@" not in value:
            raise ValueError("must be an email address such as {e164}@fax.example.net")
        _check_template(value, "{e164}, {digits} or {national}",
                        e164="+4930123456", digits="4930123456", national="030123456")
        return value

    @field_validator("subject")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        _check_template(value, "{number}", number="+4930123456")
        return value

    @field_validator("region")
    @classmethod
    def _region_known(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a two-letter region code such as DE or US")
        return value.upper()


class NumbersConfig(_Section):
    """``[numbers]``: which fax numbers may be dialled, and how they are shown in logs."""

    allow: list[str] = Field(default_factory=list)
    #: None: the built-in deny list (emergency and premium-rate numbers) for the region.
    deny: list[str] | None = None
    mask_digits: Annotated[int, Field(ge=0)] = 0


class SmtpConfig(_Section):
    """``[smtp]``: the mail server faxgw submits to."""

    host: str = "smtp.office365.com"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    verify_certificate: bool = True
    ca_file: Path | None = None
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    sender: str = "fax@contoso.com"
    #: The server's message size limit, measured after encoding (Exchange Online: 35 MB);
    #: 0 means none.
    max_message_bytes: Annotated[int, Field(ge=0)] = 35 * 1024 * 1024

    @field_validator("ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("sender")
    @classmethod
    def _sender_is_address(cls, value: str) -> str:
        if "@" not in value or value.startswith("@") or value.endswith("@"):
            raise ValueError("must be an email address")
        return value


class AuthConfig(_Section):
    """``[auth]``: how faxgw signs in to the mail server."""

    method: Literal["none", "password", "oauth2"] = "none"
    username: str = ""
    password_file: Path | None = None
    # OAuth2 (Exchange Online, Outlook.com, or a custom identity provider).
    provider: Literal["exchange-online", "outlook", "custom"] = "exchange-online"
    tenant: str = "organizations"
    client_id: str = ""
    flow: Literal["device_code", "client_credentials"] = "device_code"
    account: str = ""
    client_secret_file: Path | None = None
    #: ``client_credentials`` with a certificate: one PEM file (private key and certificate)
    #: or a PKCS#12 file (.pfx, .p12).
    client_certificate_file: Path | None = None
    #: The password of an encrypted key or PKCS#12 file (or FAXGW_CLIENT_CERTIFICATE_PASSWORD).
    client_certificate_password_file: Path | None = None
    authority: str = ""
    ca_file: Path | None = None
    #: Outside the spool (users write into the spool's outgoing/; the tokens are the keys to
    #: the mailbox).
    token_cache: Path = Path("../state/tokens.json")
    scopes: list[str] = Field(default_factory=list)
    keepalive_days: Annotated[float, Field(gt=0)] = 7.0
    http_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("password_file", "client_secret_file", "client_certificate_file",
                     "client_certificate_password_file", "ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("authority")
    @classmethod
    def _authority_https(cls, value: str) -> str:
        # msal refuses any authority that is not https://host/<tenant>.
        if value and not value.startswith("https://"):
            raise ValueError("must start with https:// (msal accepts no other scheme)")
        return value.rstrip("/")


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from a duration with its unit: ``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``,
    ``"2w"``. A bare number is refused: ``retention = 30`` would mean 30 seconds to the
    gateway and 30 days to the person who wrote it."""
    example = '"90s", "15m", "24h", "30d"'
    if isinstance(value, bool) or isinstance(value, int | float):
        raise ValueError(f"give a unit: a duration such as {example}")
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a duration such as {example}")
    text = value.strip().lower()
    if text[-1] not in _DURATION_UNITS:
        try:
            float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a duration such as {example}") from None
        raise ValueError(f"{value!r} has no unit: write it as {text}s, {text}m, {text}h or "
                         f"{text}d") from None
    try:
        seconds = float(text[:-1]) * _DURATION_UNITS[text[-1]]
    except ValueError:
        raise ValueError(f"{value!r} is not a duration such as {example}") from None
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


class RetryConfig(_Section):
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


class LimitsConfig(_Section):
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


class Config(_Section):
    """The whole validated configuration."""

    spool: SpoolConfig = SpoolConfig()
    service: ServiceConfig = ServiceConfig()
    numbers: NumbersConfig = NumbersConfig()
    smtp: SmtpConfig = SmtpConfig()
    auth: AuthConfig = AuthConfig()
    retry: RetryConfig = RetryConfig()
    limits: LimitsConfig = LimitsConfig()
    intake: IntakeConfig = IntakeConfig()
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


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    return value if value.is_absolute() else (base / value).resolve()


def _format_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if len(loc) >= 2:
        key = f"[{loc[0]}] {'.'.join(loc[1:])}"
    elif loc:
        key = f"[{loc[0]}]" if loc[0] in Config.model_fields else loc[0]
    else:
        key = ""
    problem = first["msg"]
    if first["type"] == "extra_forbidden":
        problem = "unknown section" if len(loc) == 1 else "unknown key"
        if len(loc) == 1:
            key = f"[{loc[0]}]"
    elif problem.startswith("Value error, "):
        problem = problem.removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path}: {key + ': ' if key else ''}{problem}{more}"


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where the configuration is: the explicit path, ``FAXGW_CONFIG``, or the default."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the configuration; raise :class:`ConfigError` naming the bad key."""
    config_path = find_config_path(path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{config_path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: not valid TOML: {exc}") from None
    return config_from_dict(raw, base=config_path.resolve().parent, source=config_path)


def config_from_dict(raw: dict[str, Any], *, base: Path, source: Path | None = None) -> Config:
    """Validate a parsed configuration; relative paths resolve against ``base``."""
    raw = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in raw.items()
    }
    auth = raw.get("auth", {})
    smtp = raw.setdefault("smtp", {})
    if isinstance(auth, dict) and isinstance(smtp, dict) and auth.get("method") == "oauth2":
        # A provider preset fills what a user should not have to know; explicit keys win.
        for key, value in PROVIDER_SMTP.get(auth.get("provider", "exchange-online"), {}).items():
            smtp.setdefault(key, value)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(source or Path("<config>"), exc)) from None
    return config.model_copy(
        update={
            "source": source,
            "spool": config.spool.model_copy(update={"dir": _resolve(base, config.spool.dir)}),
            "smtp": config.smtp.model_copy(update={"ca_file": _resolve(base, config.smtp.ca_file)}),
            "service": config.service.model_copy(
                update={"cover_template": _resolve(base, config.service.cover_template)}
            ),
            "auth": config.auth.model_copy(
                update={
                    "password_file": _resolve(base, config.auth.password_file),
                    "client_secret_file": _resolve(base, config.auth.client_secret_file),
                    "client_certificate_file": _resolve(base,
                                                        config.auth.client_certificate_file),
                    "client_certificate_password_file": _resolve(
                        base, config.auth.client_certificate_password_file),
                    "ca_file": _resolve(base, config.auth.ca_file),
                    "token_cache": _resolve(base, config.auth.token_cache),
                }
            ),
        }
    )
