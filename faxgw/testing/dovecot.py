"""A real IMAP server for tests: Dovecot, unprivileged, in a temporary folder of its own.

:class:`DovecotServer` starts Debian's ``/usr/sbin/dovecot`` (package ``dovecot-imapd``) in
the foreground with its own configuration (:mod:`faxgw.testing.dovecot_config`): implicit TLS
on a free port of 127.0.0.1 with a certificate from a throw-away trustme CA (``ca_file``),
Maildir under the folder, its log in the folder. Users sign in with:

- XOAUTH2 (and OAUTHBEARER) when ``idp`` is given: Dovecot's ``oauth2`` passdb asks the
  :class:`~faxgw.testing.idp.LocalIdentityProvider`'s introspection endpoint (RFC 7662, over
  HTTPS trusting the IdP's CA) whether the bearer token is active and whose it is;
- PLAIN or LOGIN with a password for the ``users`` given, and for :data:`POSTMASTER`, a master
  user that may act as any mailbox: the tests deliver fixtures as it with IMAP APPEND, and
  look at mailboxes with :meth:`folders` and :meth:`messages`.

It works as root (Dovecot's processes then run as its package's unprivileged users) and as a
normal user. ``with DovecotServer(idp=idp) as imap: ...``; :meth:`stop` ends it (every
client is cut off), :meth:`start` runs it again on the same port with the same mail.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import trustme

from faxgw.testing.dovecot_config import POSTMASTER, Oauth2Check, write_config

if TYPE_CHECKING:
    from faxgw.testing.idp import LocalIdentityProvider

__all__ = ["DOVECOT", "POSTMASTER", "DovecotServer", "DovecotMissing"]

DOVECOT = Path("/usr/sbin/dovecot")
#: How long Dovecot may take to answer (well under a second is usual; CI machines are slow).
READY_WITHIN = 30.0


class DovecotMissing(RuntimeError):
    """Dovecot is not installed: the tests that need it fail with this, they never skip."""


class DovecotServer:
    """Dovecot serving IMAP over implicit TLS on ``host``:``port``; ``ca_file`` is its CA.

    ``idp`` enables XOAUTH2 against that identity provider (``scope``: a scope the token
    must hold, "" for any); ``users`` are password users (name → password);
    ``capabilities`` replaces what Dovecot advertises after login.
    """

    host = "localhost"

    def __init__(
        self,
        *,
        idp: LocalIdentityProvider | None = None,
        scope: str = "",
        users: dict[str, str] | None = None,
        capabilities: str | None = None,
    ) -> None:
        if not DOVECOT.exists():
            raise DovecotMissing(
                f"{DOVECOT} is missing: install the Debian package dovecot-imapd "
                "(apt-get install dovecot-imapd); the IMAP tests need a real Dovecot")
        self._idp = idp
        self._scope = scope
        self.postmaster_password = secrets.token_urlsafe(18)
        self._users = {**(users or {}), POSTMASTER: self.postmaster_password}
        self._capabilities = capabilities
        self._process: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self.port = 0

    # -- life cycle ----------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The server's folder (configuration, mail, ``dovecot.log``)."""
        if self._root is None:
            raise RuntimeError("the Dovecot server has not been started")
        return self._root

    @property
    def ca_file(self) -> Path:
        """The CA a client must trust for the server's certificate."""
        return self.root / "ca.pem"

    @property
    def log_file(self) -> Path:
        return self.root / "dovecot.log"

    def log(self) -> str:
        """What Dovecot logged so far."""
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def start(self) -> Self:
        """Run Dovecot until it listens (the first start writes its folder and picks a port;
        a later one serves the same mail on the same port)."""
        if self._process is not None:
            return self
        first = self._root is None
        if first:
            self._prepare()
        for attempt in (1, 2, 3):
            try:
                self._run()
                return self
            except RuntimeError as exc:
                # A free port found by binding can be taken by another process before Dovecot
                # binds it: on the first start, try another one.
                if not (first and attempt < 3 and "Address already in use" in str(exc)):
                    raise
                self._configure(_free_port())
        raise AssertionError("unreachable")

    def _run(self) -> None:
        process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(self.root / "dovecot.conf")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self._process = process
        try:
            self._wait_ready(process)
        except BaseException:
            self.stop()
            raise

    def _prepare(self) -> None:
        # Not under the test's tmp_path: as root, Dovecot's unprivileged processes must reach
        # their sockets and the mail here, and pytest's folders are private to their owner.
        root = Path(tempfile.mkdtemp(prefix="faxgw-dovecot-"))
        root.chmod(0o755)
        self._root = root
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        leaf.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
        # The key is read by Dovecot's master process (still root, or this user) only.
        leaf.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "key.pem").chmod(0o600)
        if self._idp is not None:
            # Dovecot's auth process (the internal user) reads the CA: give it a readable copy.
            shutil.copyfile(self._idp.ca_file, root / "idp-ca.pem")
            (root / "idp-ca.pem").chmod(0o644)
        self._configure(_free_port())

    def _configure(self, port: int) -> None:
        self.port = port
        oauth2 = None
        if self._idp is not None:
            # 127.0.0.1, not localhost: Dovecot would ask its DNS helper for a name; the IdP's
            # certificate holds the address too.
            oauth2 = Oauth2Check(f"https://127.0.0.1:{self._idp.port}/introspect",
                                 self.root / "idp-ca.pem", self._scope)
        write_config(self.root, port=port, cert_file=self.root / "cert.pem",
                     key_file=self.root / "key.pem", users=self._users, oauth2=oauth2,
                     capabilities=self._capabilities)

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        """Until the port answers with an IMAP greeting; Dovecot's log in the error if not."""
        deadline = time.monotonic() + READY_WITHIN
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise RuntimeError(f"Dovecot exited with status {process.returncode} while "
                                   f"starting:\n{output}\n{self.log()}")
            if self._greets():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not listen on 127.0.0.1:{self.port} within "
                                   f"{READY_WITHIN:.0f} s:\n{self.log()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self._context(),
                                       timeout=5)
        except (OSError, imaplib.IMAP4.error):
            return False
        client.logout()
        return True

    def stop(self) -> None:
        """Stop Dovecot at once, every process of it (its clients are cut off, as when a
        server dies); the folder and the mail stay."""
        process, self._process = self._process, None
        if process is None:
            return
        # SIGKILL to the process group (Dovecot's master and every child it started): a
        # graceful SIGTERM costs a second per server, and the master does not wait for a
        # client's imap process, which could go on serving.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
        # So that the next start does not take a recycled pid for a running Dovecot.
        (self.root / "run" / "master.pid").unlink(missing_ok=True)

    def close(self) -> None:
        """Stop and remove the folder."""
        self.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ is not called when __enter__ fails
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- looking into mailboxes (as the postmaster, over IMAP) ------------------------------

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _as(self, user: str) -> imaplib.IMAP4_SSL:
        """An IMAP connection logged in as ``user`` by the master user."""
        client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self._context(),
                                   timeout=10)
        client.login(f"{user}*{POSTMASTER}", self.postmaster_password)
        return client

    def append(self, user: str, folder: str, raw: bytes) -> int:
        """Deliver ``raw`` to ``user``'s ``folder`` (created when missing); its UID."""
        client = self._as(user)
        try:
            if folder.upper() != "INBOX":
                client.create(_mailbox(folder))  # "already exists" is fine
            status, data = client.append(_mailbox(folder), None, None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND to {folder} refused: {data!r}")
            # [APPENDUID <uidvalidity> <uid>] (UIDPLUS)
            code = (data[0] or b"").decode()
            return int(code.split("]")[0].split()[-1])
        finally:
            client.logout()

    def folders(self, user: str) -> list[str]:
        """``user``'s folder names."""
        client = self._as(user)
        try:
            _, lines = client.list()
        finally:
            client.logout()
        names = []
        for line in lines:
            if isinstance(line, bytes):
                names.append(line.decode().rpartition(' "/" ')[2].strip('"'))
        return sorted(names)

    def messages(self, user: str, folder: str) -> list[bytes]:
        """The messages in ``user``'s ``folder``, oldest first (none when it is missing),
        those marked deleted included: a test sees what a move left behind."""
        client = self._as(user)
        try:
            status, _ = client.select(_mailbox(folder), readonly=True)
            if status != "OK":
                return []
            _, data = client.uid("FETCH", "1:*", "(BODY.PEEK[])")
        finally:
            client.logout()
        return [item[1] for item in data if isinstance(item, tuple)]

    def uidvalidity(self, user: str, folder: str) -> int:
        """The folder's UIDVALIDITY."""
        client = self._as(user)
        try:
            _, data = client.status(_mailbox(folder), "(UIDVALIDITY)")
        finally:
            client.logout()
        return int((data[0] or b"").decode().rstrip(")").split()[-1])

    def recreate(self, user: str, folder: str) -> None:
        """Delete and create ``folder`` again: it gets a new UIDVALIDITY, as when a mailbox is
        restored or migrated. Its messages are lost (use a folder other than INBOX)."""
        client = self._as(user)
        try:
            client.delete(_mailbox(folder))
            client.create(_mailbox(folder))
        finally:
            client.logout()


def _mailbox(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
