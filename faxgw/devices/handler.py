"""The SMTP intake's decisions: who may send, to which numbers, and what becomes of DATA.

aiosmtpd calls the ``handle_*`` hooks of :class:`IntakeHandler`. Everything that can be
known before the data is refused before the data: a recipient outside ``[intake.smtp]
domain`` or a number ``[numbers]`` refuses at ``RCPT``, so a device never sends a scan for
nothing. The work that blocks (writing files with fsync, the job store, the render) runs
in a thread, never on the event loop; ``250`` comes only once every job is in the spool and
the store, so a device never deletes a scan the gateway does not have.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import Config
from ..domain import codes
from ..domain.errors import FaxgwError, InputError, NumberError, SpoolError, StoreError
from ..domain.jobs import Job, JobState
from ..fax.policy import mask, parse_and_check
from .activity import Activity
from .message import Document, read_letter
from .replies import Answer, reply
from .staging import staged

__all__ = ["MAX_RECIPIENTS", "IntakeHandler", "Mailbox", "MailboxFor", "Submit"]

log = logging.getLogger("faxgw.devices")

#: More recipients than this in one message are refused (each is a job and a render).
MAX_RECIPIENTS = 50
#: Below this much free space in the spool (and three times a declared SIZE) a message is
#: refused at MAIL with 452: better now than after the device sent the whole scan.
_MIN_FREE_BYTES = 16 * 1024 * 1024


class Submit(Protocol):
    """The use case that makes one job of files (``faxgw.app.submit.submit`` with its
    configuration bound): it copies them into the spool with fsync, registers, renders and
    pre-flights the job, and raises what ``faxgw submit`` raises."""

    def __call__(self, number: str, files: Sequence[Path], *, subject: str = "",
                 note: str = "", sender: str = "", sender_signed_in: bool = False,
                 notify: str = "", source: str = "submit") -> Job: ...


@dataclass(frozen=True, slots=True)
class Mailbox:
    """The mailbox a device user's faxes are sent as: ``address`` ("" = the gateway's own),
    ``signed_in`` when its owner signed it in ("Send as me"), which is the proof that lets it
    through ``[intake] allowed_senders``."""

    address: str = ""
    signed_in: bool = False


#: The mailbox for an authenticated user name (asked once per message, in a taker thread).
MailboxFor = Callable[[str], Mailbox]


class IntakeHandler:
    """aiosmtpd's handler for the SMTP intake."""

    def __init__(self, config: Config, submit: Submit, executor: Executor,
                 mailbox_for: MailboxFor | None = None,
                 activity: Activity | None = None) -> None:
        self.config = config
        self.settings = config.intake.smtp
        self._submit = submit
        self._executor = executor
        self._mailbox_for = mailbox_for
        self._activity = activity
        # Messages begun in each connection (MAIL commands), for the per-connection limit.
        self._messages: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        """Offer AUTH only when users may authenticate (aiosmtpd would list it anyway)."""
        session.host_name = hostname
        if self.settings.auth == "none":
            return [line for line in responses if not line[4:].upper().startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        """A new message: within the connection's limit, from one plain address (it is
        told how the job ends), and with room for it in the spool."""
        return self._counted(self._mail(server, session, envelope, address, mail_options),
                             refused="messages_refused")

    def _mail(self, server: Any, session: Any, envelope: Any, address: str,
              mail_options: list[str]) -> str:
        count = self._messages.get(session, 0) + 1
        self._messages[session] = count
        limit = self.settings.max_messages_per_connection
        if count > limit:
            # Closed after the reply is written: the client reconnects for more.
            server.loop.call_soon(_close, server)
            return reply(Answer.TOO_MANY_MESSAGES, limit=limit)
        if not _one_address(address):
            return reply(Answer.NOTIFY_ADDRESS, address=address, code=codes.NOTIFY_ADDRESS)
        declared = _declared_size(mail_options)
        try:
            free = shutil.disk_usage(self.config.spool.dir).free
        except OSError:
            free = None  # the spool is not there yet: submit makes it, or says why not
        if free is not None and free < max(_MIN_FREE_BYTES, 3 * declared):
            return reply(Answer.SPOOL_FULL, cause=f"{free // 1024} KiB free in the spool")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return reply(Answer.SENDER_OK)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        """A recipient is ``<number>@domain`` with a number the policy allows."""
        return self._counted(self._rcpt(envelope, address, rcpt_options),
                             refused="recipients_refused")

    def _rcpt(self, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        local, at, domain = address.rpartition("@")
        if not at or domain.lower() != self.settings.domain or not local:
            return reply(Answer.FOREIGN_DOMAIN, address=address, domain=self.settings.domain)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return reply(Answer.TOO_MANY_RECIPIENTS, limit=MAX_RECIPIENTS)
        try:
            number = parse_and_check(local, self.config.numbers, self.config.service.region)
        except NumberError as exc:
            answer = (Answer.REFUSED_NUMBER if exc.code == codes.NUMBER_REFUSED
                      else Answer.INVALID_NUMBER)
            return reply(answer, address=address, cause=exc.message, code=exc.code)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return reply(Answer.RECIPIENT_OK, number=number.e164)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Take the message in a thread; the reply says what became of it."""
        data = envelope.original_content or b""
        numbers = list(dict.fromkeys(
            parse_and_check(address.rpartition("@")[0], self.config.numbers,
                            self.config.service.region).e164
            for address in envelope.rcpt_tos))
        # The user name the authenticator kept (never the password), when one signed in.
        user = session.auth_data if session.authenticated and isinstance(
            session.auth_data, str) else ""
        loop = asyncio.get_running_loop()
        # Not cancelled with the connection: a job half-way into the spool is finished and
        # registered (the device, not having seen 250, may send it again: at least once).
        answer = await loop.run_in_executor(self._executor, self.take, data, numbers,
                                            envelope.mail_from or "", session.peer, user)
        return self._counted(answer, refused="messages_refused", accepted="messages_accepted")

    def _counted(self, answer: str, *, refused: str, accepted: str = "") -> str:
        """``answer``, counted for the status sheet (:mod:`~faxgw.devices.activity`)."""
        if self._activity is not None:
            if not answer.startswith("2"):
                self._activity.count(refused)
            elif accepted:
                self._activity.count(accepted)
        return answer

    def take(self, data: bytes, numbers: list[str], mail_from: str, peer: Any,
             user: str = "") -> str:
        """Make the jobs of one message (blocking); the reply line for the client. ``user``:
        the name the client authenticated as ("" for none)."""
        try:
            return self._take(data, numbers, mail_from, peer, user)
        except Exception:  # noqa: BLE001 - the client gets a 451, never a traceback
            log.exception("SMTP intake: a message from %s could not be taken", _host(peer))
            return reply(Answer.NOT_TAKEN, code=codes.INTERNAL)

    def _take(self, data: bytes, numbers: list[str], mail_from: str, peer: Any,
              user: str) -> str:
        letter = read_letter(data)
        documents = list(letter.documents)
        note = ""
        body = self.settings.body
        if letter.text and body != "ignore":
            if body == "page" or not documents:
                page = Document("message.txt", letter.text.encode("utf-8") + b"\n")
                documents.insert(0, page)
            else:
                note = letter.text
        if not documents:
            return reply(Answer.NOTHING_TO_FAX)
        jobs: list[Job] = []
        # The job log says where a fax came from: the device and who sent it.
        source = f"smtp from {_host(peer)}, MAIL FROM <{mail_from}>" + (
            f", From {letter.author}" if letter.author else "") + (
            f", user {user}" if user else "")
        mailbox = self._mailbox_for(user) if user and self._mailbox_for else Mailbox()
        refusal = self._submit_all(jobs, documents, numbers, subject=letter.subject,
                                   note=note, notify=mail_from, source=source,
                                   mailbox=mailbox)
        digits = self.config.numbers.mask_digits
        for job in jobs:
            log.info("SMTP intake: %s from %s (From %s, MAIL FROM <%s>) to %s: %s", job.id,
                     _host(peer), letter.author or "-", mail_from, mask(job.number, digits),
                     job.state.value if job.code is None else f"{job.state.value} "
                                                             f"({job.code})")
        if refusal is not None:
            if jobs:
                # One reply covers every recipient: those taken before the refusal stay
                # taken, and a device that sends the message again makes them twice.
                log.warning("SMTP intake: %d of %d job(s) of a message were made before it "
                            "was refused (%s)", len(jobs), len(numbers), refusal)
            return refusal
        return reply(Answer.ACCEPTED, jobs=", ".join(_said(job) for job in jobs))

    def _submit_all(self, jobs: list[Job], documents: Sequence[Document], numbers: list[str],
                    *, subject: str, note: str, notify: str, source: str,
                    mailbox: Mailbox) -> str | None:
        """One job per number into ``jobs``; None, or the reply that refuses the message."""
        try:
            with staged(self.config) as folder:
                files = _write(folder, documents)
                for number in numbers:
                    jobs.append(self._submit(number, files, subject=subject, note=note,
                                             sender=mailbox.address,
                                             sender_signed_in=mailbox.signed_in,
                                             notify=notify, source=source))
        except (InputError, NumberError) as exc:
            return reply(Answer.REFUSED_INPUT, cause=exc.message, code=exc.code)
        except SpoolError as exc:
            log.error("SMTP intake: the spool cannot take a message: %s", exc)
            return reply(Answer.SPOOL_FULL, cause="the spool cannot be written")
        except StoreError as exc:
            log.error("SMTP intake: the job store cannot take a message: %s", exc)
            return reply(Answer.STORE_DOWN)
        except OSError as exc:  # its files waiting to be copied (a full disk)
            log.error("SMTP intake: cannot take a message: %s", exc.strerror or exc)
            return reply(Answer.SPOOL_FULL, cause=exc.strerror or "a file error")
        except FaxgwError as exc:
            log.error("SMTP intake: cannot take a message: %s", exc)
            return reply(Answer.NOT_TAKEN, code=exc.code or codes.INTERNAL)
        return None


def _said(job: Job) -> str:
    if job.state is JobState.FAILED:
        return f"job {job.id} failed (code {job.code})"
    return f"job {job.id} {job.state.value}"


def _write(folder: Path, documents: Sequence[Document]) -> list[Path]:
    """Each document in a folder of its own, so that two parts of one name both arrive."""
    files = []
    for index, document in enumerate(documents):
        place = folder / f"{index:03d}"
        place.mkdir()
        path = place / document.name
        path.write_bytes(document.data)
        files.append(path)
    return files


def _one_address(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return (bool(at and local) and "." in domain and len(address) <= 254
            and not any(c.isspace() or c in ',;<>()[]\\"' or not c.isprintable()
                        for c in address))


def _declared_size(options: list[str]) -> int:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _host(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _close(server: Any) -> None:
    if server.transport is not None:
        server.transport.close()
