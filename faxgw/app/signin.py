"""Signing in to the email service: the device code sign-in, its state, sign-out, and a test
that connects and signs in without sending (``faxgw auth``; the web console next)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ..auth.device_flow import DeviceFlow, PollEvent, SignInCancelled
from ..auth.oauth2 import OAuth2Provider
from ..config import Config
from ..domain.errors import ConfigError
from ..domain.signin import AccountStatus
from ..transport.graph import GraphSession, MailboxCheck, Verdict
from .wiring import make_credentials, make_transport

__all__ = ["DeviceFlow", "MailboxCheck", "PollEvent", "SignIn", "SignInCancelled", "Verdict",
           "probe", "sign_in_summary", "sign_out", "start_sign_in", "start_user_sign_in",
           "statuses", "user_refusal"]


def _oauth2(config: Config, command: str) -> OAuth2Provider:
    if config.auth.method != "oauth2":
        raise ConfigError(f"[auth] method: 'faxgw auth {command}' needs method = \"oauth2\" "
                          f"(it is \"{config.auth.method}\")")
    return OAuth2Provider(config)


class SignIn:
    """A device code sign-in under way: show :attr:`flow` to the person, then :meth:`finish`.

    Use as a context manager, so that the connections to the identity provider close."""

    def __init__(self, config: Config, account: str | None,
                 accept: Callable[[str], str | None] | None = None) -> None:
        self._accept = accept
        self._provider = _oauth2(config, "login")
        try:
            self.flow: DeviceFlow = self._provider.start_device_flow(account)
        except BaseException:
            self._provider.close()
            raise

    def finish(self, on_poll: Callable[[PollEvent], None] | None = None) -> str:
        """Wait until the person has signed in; the account signed in. Raises
        :class:`SignInCancelled` on Ctrl-C, an ``AuthError`` when the sign-in fails."""
        return self._provider.finish_device_flow(self.flow, on_poll=on_poll,
                                                 accept=self._accept)

    def close(self) -> None:
        """Close the connections to the identity provider."""
        self._provider.close()

    def __enter__(self) -> SignIn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_sign_in(config: Config, account: str | None = None) -> SignIn:
    """Ask the identity provider for a device code to sign in as ``account`` (or
    ``[auth] account``)."""
    return SignIn(config, account or config.auth.account or None)


def start_user_sign_in(config: Config,
                       accept: Callable[[str], str | None] | None = None) -> SignIn:
    """A device code sign-in for a person's own mailbox ("Send as me"): no account is
    expected; who signed in is the account the identity provider reports, refused (its new
    tokens not kept) when ``accept`` (by default :func:`user_refusal`) says why."""
    return SignIn(config, None, accept or (lambda username: user_refusal(config, username)))


def user_refusal(config: Config, username: str) -> str | None:
    """Why ``username`` may not use "Send as me" (``[web] user_domains``), or None."""
    domains = config.web.user_domains
    address = username.strip().lower()
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        return (f"The sign-in service did not name a mail address ({username!r}); "
                "'Send as me' needs one.")
    gateway = (config.auth.account or config.smtp.sender).strip().lower()
    if address == gateway:
        return (f"{username} is the gateway's own account: the administrator signs it in "
                "from Email server.")
    if not domains:
        return (f"Signed in as {username}, but 'Send as me' is off on this gateway "
                "([web] user_domains is empty): ask the administrator.")
    if domain not in domains:
        return (f"Signed in as {username}, but {domain} is not one of the domains allowed "
                f"to send as themselves ([web] user_domains: {', '.join(domains)}): ask the "
                "administrator.")
    return None


def statuses(config: Config) -> list[AccountStatus]:
    """Per account: signed in, expired or sign-in needed (from the token cache, offline)."""
    with _oauth2(config, "status") as provider:
        return provider.status()


def sign_out(config: Config, account: str | None = None) -> list[str]:
    """Remove the stored sign-in of ``account`` (or of every account); the accounts removed."""
    with _oauth2(config, "logout") as provider:
        return provider.logout(account)


def sign_in_summary(config: Config) -> str:
    """A one-line sign-in state for the status sheet (offline)."""
    if config.auth.method == "none":
        return "not needed (no authentication)"
    if config.auth.method == "password":
        return f"password for {config.auth.username or config.smtp.sender}"
    try:
        provider = OAuth2Provider(config)
    except ConfigError as exc:
        return f"not configured: {exc}"
    try:
        return provider.sign_in_summary()
    finally:
        provider.close()


async def probe(config: Config, account: str) -> MailboxCheck | None:
    """Connect to the mail server, secure the connection and sign in as ``account``, then
    quit: nothing is sent. The worker's own session code (one forced token refresh after a
    ``535 5.7.3``). Raises the classified error when it fails.

    With the Graph transport a token is all a session needs; so the mailbox is asked a
    harmless question as well (:meth:`GraphSession.check_mailbox`), whose verdict is returned
    and kept for the status sheet."""
    credentials = make_credentials(config)
    try:
        session = make_transport(config, credentials).session(account)
        await session.open()
        try:
            check = (await session.check_mailbox() if isinstance(session, GraphSession)
                     else None)
        finally:
            await session.close()
        if check is not None and isinstance(credentials, OAuth2Provider):
            await asyncio.to_thread(credentials.record_mailbox_check, account,
                                    check.verdict.value, check.line)
        return check
    finally:
        credentials.close()
