"""Which mailbox a device's fax is sent as: the SMTP intake's user, mapped to a mailbox.

A device that authenticates to the SMTP intake does so as a user of ``[intake.smtp]
users_file``. A user whose name is a mail address sends as that mailbox when the gateway may
send as it: its owner signed it in with "Send as me" (its sign-in is in the token cache, and
its domain still in ``[web] user_domains``), or ``[intake] allowed_senders`` lists it. Every
other user, and every device that does not authenticate, sends as the gateway's own mailbox.
The answer comes from the token cache as it is now (no network), asked once per message.

Also the listener's part of the status sheet: its settings and the counts it last wrote.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from ..config import Config
from ..devices import Mailbox, MailboxFor
from ..domain.signin import SIGN_IN_NEEDED
from ..intake.register import sender_allowed
from ..ports import CredentialProvider
from .signin import user_refusal

__all__ = ["device_mailbox", "listener_rows", "listener_status", "listener_summary",
           "mailbox_for"]

log = logging.getLogger("faxgw.devices")


def device_mailbox(config: Config, credentials: CredentialProvider, user: str) -> Mailbox:
    """The mailbox intake user ``user``'s faxes are sent as (``Mailbox()``: the gateway's)."""
    address = user.strip()
    local, at, domain = address.rpartition("@")
    if not (local and at and "." in domain):
        return Mailbox()  # a device name such as scanner-2f: the gateway's mailbox
    if config.auth.method == "oauth2" and user_refusal(config, address) is None:
        for status in credentials.status():
            # Signed in, or only its access token expired (refreshed before the send).
            if status.account.lower() == address.lower() and status.state != SIGN_IN_NEEDED:
                return Mailbox(status.account, signed_in=True)
    if sender_allowed(config, address) is None:
        return Mailbox(address)
    log.info("SMTP intake: user %s sends as the gateway's mailbox (not signed in with Send as "
             "me, not in [intake] allowed_senders)", address)
    return Mailbox()


def mailbox_for(config: Config, credentials: CredentialProvider) -> MailboxFor:
    """:func:`device_mailbox` for the listener (``serve_smtp(mailbox_for=…)``)."""
    return lambda user: device_mailbox(config, credentials, user)


def listener_status(config: Config) -> dict[str, Any] | None:
    """The SMTP intake for the status sheet: its settings and what the listener last wrote
    (:mod:`~faxgw.devices.activity`); None when ``[intake.smtp] listen`` is not set."""
    settings = config.intake.smtp
    if not settings.listen:
        return None
    from ..devices.activity import COUNTS, read_activity

    activity = read_activity(config) or {}
    state = "not started"
    if activity:
        state = "listening" if activity.get("running") else "stopped"
        if state == "listening" and not _alive(activity):
            state = "ended without a clean stop"
    tls = ("required" if settings.require_tls else "offered"
           if settings.certificate_file is not None else "off")
    return {
        "listen": settings.listen, "domain": settings.domain, "tls": tls,
        "auth": settings.auth, "state": state, "address": activity.get("address"),
        "started": activity.get("started"), "updated": activity.get("updated"),
        **{name: int(activity.get(name) or 0) for name in COUNTS},
    }


def listener_summary(status: dict[str, Any]) -> str:
    """:func:`listener_status` in one line (``faxgw status``, the web console)."""
    where = status["address"] or status["listen"]
    head = {"listening": f"listening on {where}", "stopped": f"stopped (was on {where})",
            "not started": f"not started yet ({status['listen']})"}.get(
                status["state"], f"{status['state']} (was on {where})")
    settings = (f"for <number>@{status['domain']}, STARTTLS {status['tls']}, "
                f"AUTH {status['auth']}")
    if status["state"] == "not started":
        return f"{head} {settings}"
    return (f"{head} {settings}; since {status['started']}: {status['connections']} "
            f"connection(s) ({status['connections_refused']} refused), "
            f"{status['messages_accepted']} message(s) accepted, "
            f"{status['messages_refused']} refused, {status['recipients_refused']} "
            f"recipient(s) refused (as of {status['updated']})")


def _alive(activity: dict[str, Any]) -> bool:
    """Whether the process that wrote ``activity`` still runs (on another host: assumed)."""
    if activity.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(activity.get("pid") or 0), 0)
    except PermissionError:
        return True  # another user's process
    except (OSError, ValueError):
        return False
    return True


def listener_rows(status: dict[str, Any]) -> list[tuple[str, str]]:
    """:func:`listener_status` as labelled rows (the web console's Email server page)."""
    rows = [("State", str(status["state"])),
            ("Address", str(status["address"] or status["listen"])),
            ("Recipients", f"<number>@{status['domain']}"),
            ("STARTTLS", str(status["tls"])), ("AUTH", str(status["auth"]))]
    if status["state"] != "not started":
        rows += [("Since", str(status["started"])),
                 ("Connections", f"{status['connections']} "
                                 f"({status['connections_refused']} refused at connect)"),
                 ("Messages accepted", str(status["messages_accepted"])),
                 ("Messages refused", str(status["messages_refused"])),
                 ("Recipients refused", str(status["recipients_refused"])),
                 ("Counted as of", str(status["updated"]))]
    return rows
