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
from typing import Any

from pydantic import ValidationError

from ..domain.errors import ConfigError
from .confirm import InboxConfig, NotifyConfig
from .devices import IntakeSmtpConfig
from .sections import (
    CLIENT_CERTIFICATE_PASSWORD_ENV,
    CLIENT_SECRET_ENV,
    GRAPH_CLOUDS,
    PASSWORD_ENV,
    AuthConfig,
    Config,
    GraphConfig,
    IntakeConfig,
    LimitsConfig,
    NumbersConfig,
    RetryConfig,
    ServiceConfig,
    SmtpConfig,
    SpoolConfig,
    TransportConfig,
    WebConfig,
)
from .store import STORE_PASSWORD_ENV, StoreConfig
from .values import is_loopback, parse_duration, split_listen

__all__ = [
    "CLIENT_CERTIFICATE_PASSWORD_ENV", "CLIENT_SECRET_ENV", "CONFIG_ENV", "DEFAULT_CONFIG",
    "GRAPH_CLOUDS", "PASSWORD_ENV", "AuthConfig", "Config", "GraphConfig", "InboxConfig",
    "IntakeConfig", "IntakeSmtpConfig", "NotifyConfig",
    "LimitsConfig", "NumbersConfig", "RetryConfig", "ServiceConfig", "SmtpConfig",
    "STORE_PASSWORD_ENV", "SpoolConfig", "StoreConfig", "TransportConfig", "WebConfig",
    "config_from_dict", "find_config_path",
    "is_loopback", "load_config", "parse_duration", "split_listen",
]

DEFAULT_CONFIG = Path("config/faxgw.toml")
CONFIG_ENV = "FAXGW_CONFIG"

#: What a provider preset fills in for ``[smtp]`` when the user did not set it.
PROVIDER_SMTP: dict[str, dict[str, Any]] = {
    "exchange-online": {"host": "smtp.office365.com", "port": 587, "security": "starttls"},
    "outlook": {"host": "smtp-mail.outlook.com", "port": 587, "security": "starttls"},
}


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
            "graph": config.graph.model_copy(update={"ca_file": _resolve(base,
                                                                         config.graph.ca_file)}),
            "inbox": config.inbox.model_copy(update={"ca_file": _resolve(base,
                                                                         config.inbox.ca_file)}),
            "store": config.store.model_copy(update={
                "password_file": _resolve(base, config.store.password_file),
                "ca_file": _resolve(base, config.store.ca_file)}),
            "service": config.service.model_copy(
                update={"cover_template": _resolve(base, config.service.cover_template)}
            ),
            "intake": config.intake.model_copy(update={"smtp": config.intake.smtp.model_copy(
                update={
                    "users_file": _resolve(base, config.intake.smtp.users_file),
                    "certificate_file": _resolve(base, config.intake.smtp.certificate_file),
                    "key_file": _resolve(base, config.intake.smtp.key_file),
                })}),
            "web": config.web.model_copy(
                update={
                    "admin_password_file": _resolve(base, config.web.admin_password_file),
                    "certificate_file": _resolve(base, config.web.certificate_file),
                    "key_file": _resolve(base, config.web.key_file),
                    "api_token_file": _resolve(base, config.web.api_token_file),
                }
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
