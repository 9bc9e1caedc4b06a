"""The configuration of the test Dovecot: one self-contained ``dovecot.conf`` in its folder.

Nothing of the system's Dovecot is used (not ``/etc/dovecot``, not its service, not syslog):
:func:`write_config` writes everything the instance needs into its own folder, so that tests
can start many at once, as root (CI) or as a normal user. :mod:`faxgw.testing.dovecot` runs it.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

#: The master user tests deliver fixtures with: it may log in as any mailbox (Dovecot's
#: ``user*master`` login) and append to it, as a mail server delivers.
POSTMASTER = "postmaster"


@dataclass(frozen=True)
class Oauth2Check:
    """Where Dovecot's ``oauth2`` passdb asks whether a bearer token is good (RFC 7662)."""

    introspection_url: str
    #: The CA the introspection endpoint's certificate chains to.
    ca_file: Path
    #: Scopes of which a token must hold one ("" = any).
    scope: str = ""


def _quote(value: str | Path) -> str:
    # Dovecot's config: a double-quoted string keeps spaces and '#' (a temporary folder's
    # name may hold either).
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Accounts:
    """Who Dovecot's processes run as, and who owns the mail."""

    internal_user: str
    internal_group: str
    login_user: str
    mail_uid: int
    mail_gid: int


def accounts() -> Accounts:
    """The users Dovecot's processes run as and the mail belongs to.

    Dovecot drops privileges to ``default_internal_user`` (auth, anvil, …) and
    ``default_login_user`` (imap-login), and accesses mail as the userdb's uid. As a normal
    user all three are that user (it cannot switch to anyone else). As root, Dovecot refuses
    to access mail as uid 0 and should not run its login processes as root: the Debian
    package's own unprivileged users run the processes (``dovecot``, ``dovenull``) and
    ``nobody`` owns the mail."""
    uid, gid = os.getuid(), os.getgid()
    if uid != 0:
        me, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
        return Accounts(me, group, me, uid, gid)
    internal, login, nobody = (pwd.getpwnam(name) for name in ("dovecot", "dovenull", "nobody"))
    return Accounts(internal.pw_name, grp.getgrgid(internal.pw_gid).gr_name, login.pw_name,
                    nobody.pw_uid, nobody.pw_gid)


def write_config(
    root: Path,
    *,
    port: int,
    cert_file: Path,
    key_file: Path,
    users: dict[str, str],
    oauth2: Oauth2Check | None,
    capabilities: str | None = None,
) -> Path:
    """Write ``dovecot.conf`` (and its passwd-file and oauth2 file) into ``root``; its path.

    ``users`` are name → password of the passwd-file (PLAIN and LOGIN, over TLS only); the
    postmaster is one of them and a master user as well. ``oauth2`` enables XOAUTH2 and
    OAUTHBEARER against a token introspection endpoint. ``capabilities`` replaces the
    capability list Dovecot advertises after login (to test a client against a server
    without MOVE, say)."""
    who = accounts()
    for folder in ("run", "state", "mail"):
        (root / folder).mkdir(exist_ok=True)
    # The mail processes run as the mail owner: the Maildirs are theirs.
    os.chown(root / "mail", who.mail_uid, who.mail_gid)
    passwd = root / "users.passwd"
    # passwd-file: user:{PLAIN}password:uid:gid::home (uid and gid come from the userdb).
    passwd.write_text("".join(f"{name}:{{PLAIN}}{secret}::::::\n"
                              for name, secret in users.items()), encoding="utf-8")
    masters = root / "masters.passwd"
    masters.write_text(f"{POSTMASTER}:{{PLAIN}}{users[POSTMASTER]}::::::\n", encoding="utf-8")
    for secrets_file in (passwd, masters):
        # Passwords: readable by Dovecot's auth process only (the folder is open to all).
        secrets_file.chmod(0o600)
        os.chown(secrets_file, pwd.getpwnam(who.internal_user).pw_uid, -1)
    mechanisms = "plain login"
    oauth2_passdb = ""
    if oauth2 is not None:
        mechanisms += " xoauth2 oauthbearer"
        ext = root / "dovecot-oauth2.conf.ext"
        ext.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {oauth2.introspection_url}\n"
            # The identity provider's certificate comes from its own test CA.
            f"tls_ca_cert_file = {oauth2.ca_file}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            + (f"scope = {oauth2.scope}\n" if oauth2.scope else "")
            + "timeout_msecs = 10000\n",
            encoding="utf-8")
        oauth2_passdb = (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {ext}\n}}\n")
    capability_line = f"imap_capability = {capabilities}\n" if capabilities else ""
    config = root / "dovecot.conf"
    config.write_text(f"""\
# The test IMAP server: implicit TLS on 127.0.0.1, Maildir under this folder.
instance_name = faxgw-{port}
base_dir = {_quote(root / "run")}
state_dir = {_quote(root / "state")}
log_path = {_quote(root / "dovecot.log")}
info_log_path = {_quote(root / "dovecot.log")}
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
default_internal_user = {who.internal_user}
default_internal_group = {who.internal_group}
default_login_user = {who.login_user}
mail_uid = {who.mail_uid}
mail_gid = {who.mail_gid}
mail_location = maildir:{root / "mail"}/%u/Maildir:LAYOUT=fs
mail_privileged_group =
login_trusted_networks = 127.0.0.0/8
ssl = required
ssl_cert = <{cert_file}
ssl_key = <{key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
# Tests check refusals: Dovecot's two-second pause after a failed login would only slow them.
auth_failure_delay = 0
auth_master_user_separator = *
auth_cache_size = 0
{capability_line}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No growing pause after each failed login from an address (Dovecot's documented way to
  # turn the authentication penalty off): tests refuse tokens on purpose, many times.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    user = {who.internal_user}
    group = {who.internal_group}
    mode = 0660
  }}
  unix_listener stats-writer {{
    user = {who.internal_user}
    group = {who.internal_group}
    mode = 0660
  }}
}}
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {masters}
}}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {passwd}
}}
{oauth2_passdb}userdb {{
  driver = static
  args = uid={who.mail_uid} gid={who.mail_gid} home={root / "mail"}/%u
}}
""", encoding="utf-8")
    return config
