"""Where and for what msal signs in: ``[auth]`` and the provider preset resolved to settings.

:func:`settings_from_config` turns ``[auth]`` (``provider``, ``flow``, ``tenant``,
``authority``, ``scopes``, ``client_id``) into the :class:`OAuth2Settings` that
:class:`~faxgw.auth.oauth2.OAuth2Provider` builds its msal application from, and raises
:class:`ConfigError` naming the key that is missing or wrong. Pure configuration, no network:
kept apart from the provider so that each stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import AuthConfig
from ..domain.errors import ConfigError

ENTRA = "https://login.microsoftonline.com"
#: Exchange Online SMTP AUTH scopes (Microsoft: "Authenticate an IMAP, POP or SMTP connection
#: using OAuth"): delegated for device code, ``.default`` with SMTP.SendAsApp for app-only.
SMTP_SEND_DELEGATED = ("https://outlook.office.com/SMTP.Send",)
SMTP_SEND_APP_ONLY = ("https://outlook.office365.com/.default",)
RESERVED_SCOPES = frozenset({"offline_access", "openid", "profile"})


def graph_scopes(resource: str, *, app_only: bool) -> tuple[str, ...]:
    """Microsoft Graph scopes for sending (``resource`` is the cloud's Graph root, such as
    ``https://graph.microsoft.com``): delegated ``Mail.Send``, app-only ``.default`` (with the
    ``Mail.Send`` application permission). A request separate from the SMTP one: one token
    cannot span two resources."""
    return (f"{resource}/.default",) if app_only else (f"{resource}/Mail.Send",)


def graph_mail_scopes(resource: str, *, app_only: bool) -> tuple[str, ...]:
    """Microsoft Graph scopes for reading the mailbox and moving what was read: delegated
    ``Mail.ReadWrite``; app-only the same ``.default`` as for sending (with the
    ``Mail.ReadWrite`` application permission granted to the app)."""
    return (f"{resource}/.default",) if app_only else (f"{resource}/Mail.ReadWrite",)


def imap_scopes(smtp_scopes: tuple[str, ...], *, app_only: bool) -> tuple[str, ...]:
    """Scopes for reading the mailbox by IMAP, on the same resource as the SMTP scopes: the
    Outlook resource serves SMTP, IMAP and POP alike, so one sign-in (and its consent) covers
    both. Delegated: ``IMAP.AccessAsUser.All``; app-only: the same ``.default`` as SMTP (with
    ``IMAP.AccessAsApp`` granted to the app)."""
    if app_only:
        return smtp_scopes
    resource = smtp_scopes[0].rpartition("/")[0] if smtp_scopes else ""
    return (f"{resource or 'https://outlook.office.com'}/IMAP.AccessAsUser.All",)


@dataclass(frozen=True)
class OAuth2Settings:
    """What msal needs, resolved from ``[auth]`` and the provider preset."""

    authority: str
    scopes: tuple[str, ...]
    client_id: str
    app_only: bool
    #: An authority from ``[auth] authority`` or ``custom``: msal must not ask Microsoft about it.
    explicit_authority: bool


def settings_from_config(auth: AuthConfig) -> OAuth2Settings:
    """Resolve the preset; raise :class:`ConfigError` naming the key that is missing or wrong."""
    app_only = auth.flow == "client_credentials"
    if not auth.client_id:
        raise ConfigError("[auth] client_id: required for method \"oauth2\" (the app's id)")
    if auth.provider == "custom":
        if not auth.authority:
            raise ConfigError("[auth] authority: required for provider \"custom\"")
        if not auth.scopes:
            raise ConfigError("[auth] scopes: required for provider \"custom\"")
        authority, scopes = auth.authority, tuple(auth.scopes)
    elif auth.provider == "outlook":
        if app_only:
            raise ConfigError("[auth] flow: personal Outlook.com accounts have no app-only "
                              "sign-in; use \"device_code\"")
        authority, scopes = f"{ENTRA}/consumers", SMTP_SEND_DELEGATED
    else:
        authority = f"{ENTRA}/{auth.tenant}"
        scopes = SMTP_SEND_APP_ONLY if app_only else SMTP_SEND_DELEGATED
        if app_only and not auth.authority and auth.tenant.lower() in (
            "organizations", "common", "consumers"
        ):
            raise ConfigError("[auth] tenant: client_credentials needs your tenant's name or "
                              "id (such as contoso.onmicrosoft.com)")
    if auth.authority:
        authority = auth.authority
    if auth.scopes:
        scopes = tuple(auth.scopes)
    reserved = RESERVED_SCOPES.intersection(scopes)
    if reserved:
        raise ConfigError(f"[auth] scopes: leave out {', '.join(sorted(reserved))} "
                          f"(msal adds them itself)")
    parts = urlsplit(authority)
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") == "":
        raise ConfigError(f"[auth] authority: {authority!r} must look like "
                          f"https://host/<tenant>")
    return OAuth2Settings(authority.rstrip("/"), scopes, auth.client_id, app_only,
                          bool(auth.authority) or auth.provider == "custom")
