"""Service profiles: what each Internet fax service expects of the email faxgw sends.

A profile bundles the address form, the attachment type, the service's limits and whether
the email body is used. ``[service] profile`` picks one; every key set in ``[service]``
overrides the profile's value. :func:`rules_for` resolves the two into one
:class:`ServiceRules`, which is all the rest of faxgw looks at.

Only rules a service documents publicly are written into its profile, each with a comment
naming the source; what is assumed is said so. ``faxgw profiles`` lists them.

Address templates use ``{e164}`` (+4930123456), ``{digits}`` (4930123456), ``{national}``
(030123456) and ``{domain}``: the domain part of ``[service] address``, for gateways whose
address is fixed in form but not in host (RFC 3192).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from ..config import ServiceConfig
from ..domain.errors import ConfigError
from ..domain.numbers import FaxNumber

AttachAs = Literal["pdf", "tiff"]
TiffCompression = Literal["group4", "group3"]
_T = TypeVar("_T")

#: Keys a profile sets and ``[service]`` may override, in the order they are shown.
PROFILE_KEYS = (
    "address",
    "attach_as",
    "tiff_compression",
    "max_pages",
    "max_attachment_bytes",
    "max_subject_chars",
    "body",
    "cover",
)


@dataclass(frozen=True, slots=True)
class Profile:
    """A built-in description of one kind of Internet fax service."""

    name: str
    description: str
    #: Where the rules come from (a service's public documentation, an RFC).
    source: str
    #: Address template; ``None`` takes ``[service] address`` as it is.
    address: str | None
    attach_as: AttachAs
    tiff_compression: TiffCompression
    max_pages: int | None
    #: Largest attachment before encoding, in bytes (the service's file size limit).
    max_attachment_bytes: int | None
    max_subject_chars: int | None
    #: Whether the email carries a text body (the job's note). Services that fax the body
    #: would add it as a page; those profiles leave it out (a cover page can carry the note).
    body: bool
    #: Whether a cover page is added unless the job says otherwise.
    cover: bool
    #: The report formats the service mails back (see :mod:`faxgw.confirm`); empty: the
    #: service sends no confirmations faxgw can read.
    reports: tuple[str, ...] = ()
    #: Whether the email's subject carries a short job token (``[faxgw 9f3b2a71]``) that the
    #: service's reports echo, when it fits ``max_subject_chars``.
    subject_token: bool = False


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        # faxgw's own defaults: no service's rules are assumed. The address is
        # [service] address, limits only where [service] sets them.
        Profile(
            name="generic",
            description="Any service that takes a PDF attachment; address from [service] address",
            source="faxgw defaults (no service's rules assumed)",
            address=None,
            attach_as="pdf",
            tiff_compression="group4",
            max_pages=None,
            max_attachment_bytes=None,
            max_subject_chars=None,
            body=True,
            cover=False,
        ),
        # RFC 3192 section 2: the recipient is "FAX=" global-phone ["/T33S=" subaddress] at
        # the gateway, global-phone being "+" and the digits. RFC 3965 (simple mode, T.37)
        # carries the fax as TIFF profile S of RFC 3949: MH-coded (Group 3, 1-D), 1728 pixels
        # wide, 204 x 98 or 204 x 196 dpi. Hence group3. An offramp gateway prints the TIFF;
        # a text part is not part of simple mode's image data, so no body is sent.
        # No limits: RFC 3192 sets none, and each gateway has its own.
        Profile(
            name="rfc3192",
            description="RFC 3192 offramp gateway: FAX=+<number>@<gateway>, TIFF profile S",
            source="RFC 3192 (address), RFC 3965 (simple mode), RFC 3949 (TIFF profile S)",
            address="FAX={e164}@{domain}",
            attach_as="tiff",
            tiff_compression="group3",
            max_pages=None,
            max_attachment_bytes=None,
            max_subject_chars=None,
            body=False,
            cover=False,
        ),
        # InterFAX (Upland), "Fax SMTP - Basic usage" (docs.uplandsoftware.com/interfax/,
        # formerly interfax.net/en/dev/email/reference): To is faxnumber@fax.tc, e.g.
        # +12125558596@fax.tc; Subject "max 60 characters"; the From address must be an
        # "allowed sender" of the account. "System Limitations"
        # (interfax.net/en/help/limitations): at most 100 pages per fax, at most 20MB of
        # attachments in total (10MB when the email is signed), no password-protected files
        # (faxgw refuses those anyway, code 411).
        # Assumed: "20MB" read as 20,000,000 bytes, the stricter reading. The body is faxed
        # as a page depending on an account preference ("/b", "/bn" subject modifiers), so
        # faxgw leaves it out and puts the note on the cover page instead.
        Profile(
            name="interfax",
            description="InterFAX email-to-fax: +<number>@fax.tc, PDF",
            source="InterFAX Fax SMTP reference and System Limitations (public docs)",
            address="{e164}@fax.tc",
            attach_as="pdf",
            tiff_compression="group4",
            max_pages=100,
            max_attachment_bytes=20_000_000,
            max_subject_chars=60,
            body=False,
            cover=False,
            # "Fax confirmation" (InterFAX Fax SMTP reference): a confirmation per fax to the
            # sender, as text, HTML, CSV or XML; faxgw reads CSV and XML.
            reports=("interfax",),
            # The confirmation repeats the fax's subject: a token in it ties the report to
            # its job.
            subject_token=True,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """The rules one configured service follows: a profile with ``[service]``'s overrides."""

    profile: str
    #: Address template with ``{e164}``, ``{digits}`` or ``{national}`` (``{domain}`` filled).
    address: str
    attach_as: AttachAs
    tiff_compression: TiffCompression
    max_pages: int | None
    max_attachment_bytes: int | None
    max_subject_chars: int | None
    body: bool
    cover: bool
    cover_template: Path | None
    #: Subject template with ``{number}``, for jobs without a subject of their own.
    subject: str
    paper: str
    #: The keys whose value came from ``[service]`` rather than the profile.
    overridden: frozenset[str] = field(default_factory=frozenset)
    #: Whether the email's subject carries the job's token (the profile's choice).
    subject_token: bool = False

    def address_for(self, number: FaxNumber) -> str:
        """The recipient address for ``number``, e.g. ``+4930123456@fax.tc``."""
        return number.address(self.address)

    def subject_for(self, number: str) -> str:
        """The default subject for a job to ``number`` (E.164)."""
        return self.subject.format(number=number)

    def email_subject(self, subject: str, job_id: str) -> str:
        """The subject as the email carries it: with the job's token when the profile asks
        for one and it fits the subject limit (else as it is: reports then match otherwise)."""
        if not self.subject_token:
            return subject
        tagged = f"{subject} {subject_token(job_id)}".strip()
        if self.max_subject_chars is not None and len(tagged) > self.max_subject_chars:
            return subject
        return tagged

    def origin(self, key: str) -> str:
        """Where the value of ``key`` comes from, for messages: ``[service] max_pages``."""
        if key in self.overridden:
            return f"[service] {key}"
        return f"{self.profile} profile"

    def to_json(self) -> dict[str, object]:
        """The rules as ``faxgw preview --json`` prints them."""
        return {
            "profile": self.profile,
            "address": self.address,
            "attach_as": self.attach_as,
            "tiff_compression": self.tiff_compression,
            "max_pages": self.max_pages,
            "max_attachment_bytes": self.max_attachment_bytes,
            "max_subject_chars": self.max_subject_chars,
            "body": self.body,
            "cover": self.cover,
            "cover_template": str(self.cover_template) if self.cover_template else None,
            "subject": self.subject,
            "paper": self.paper,
            "overridden": sorted(self.overridden),
        }


def subject_token(job_id: str) -> str:
    """The short token of a job in a subject: ``[faxgw <the id's random part>]``."""
    return f"[faxgw {job_id.rpartition('-')[2]}]"


def get_profile(name: str) -> Profile:
    """The built-in profile ``name``; an unknown name raises :class:`ConfigError`."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"[service] profile: unknown profile {name!r} (known: {', '.join(PROFILES)})"
        ) from None


def rules_for(service: ServiceConfig) -> ServiceRules:
    """Resolve ``[service] profile`` and every key ``[service]`` sets into one set of rules.

    A key left unset (``None``) takes the profile's value. ``[service] address`` is taken
    as a whole when it was written in the file, or when the profile has no address of its
    own; a profile whose address names ``{domain}`` (rfc3192) takes only its domain.
    ``max_attachment_bytes = 0`` means no limit. Raises :class:`ConfigError` for an unknown
    profile.
    """
    profile = get_profile(service.profile)
    overridden: set[str] = set()

    def pick(key: str, configured: _T | None, default: _T) -> _T:
        if configured is None:
            return default
        overridden.add(key)
        return configured

    max_bytes = pick("max_attachment_bytes", service.max_attachment_bytes,
                     profile.max_attachment_bytes)
    address, address_overridden = _address(profile, service)
    if address_overridden:
        overridden.add("address")
    return ServiceRules(
        profile=profile.name,
        address=address,
        attach_as=pick("attach_as", service.attach_as, profile.attach_as),
        tiff_compression=pick("tiff_compression", service.tiff_compression,
                              profile.tiff_compression),
        max_pages=pick("max_pages", service.max_pages, profile.max_pages),
        # [service] max_attachment_bytes = 0 means "no limit of faxgw's own".
        max_attachment_bytes=max_bytes or None,
        max_subject_chars=pick("max_subject_chars", service.max_subject_chars,
                               profile.max_subject_chars),
        body=pick("body", service.body, profile.body),
        cover=pick("cover", service.cover, profile.cover),
        cover_template=service.cover_template,
        subject=service.subject,
        paper=service.paper,
        overridden=frozenset(overridden),
        subject_token=profile.subject_token,
    )


def _address(profile: Profile, service: ServiceConfig) -> tuple[str, bool]:
    """The address template and whether it came from ``[service]``."""
    if profile.address is None:
        return service.address, True
    if "{domain}" in profile.address:
        # The gateway's host is the user's; the form is the profile's (RFC 3192).
        domain = service.address.rpartition("@")[2]
        return profile.address.replace("{domain}", domain), False
    # pydantic records which keys the file set: the default address is not an override.
    if "address" in service.model_fields_set:
        return service.address, True
    return profile.address, False


def describe_limits(rules: ServiceRules | Profile) -> list[str]:
    """The limits in words, e.g. ``["100 pages", "20 MB", "subject 60 characters"]``."""
    limits: list[str] = []
    if rules.max_pages is not None:
        limits.append(f"{rules.max_pages} pages")
    if rules.max_attachment_bytes is not None:
        limits.append(format_bytes(rules.max_attachment_bytes))
    if rules.max_subject_chars is not None:
        limits.append(f"subject {rules.max_subject_chars} characters")
    return limits


def format_bytes(size: int) -> str:
    """A size for people: ``20 MB`` (decimal), ``20 MiB`` for exact binary megabytes."""
    mebi = 1024 * 1024
    if size >= mebi and size % mebi == 0:
        return f"{size // mebi} MiB"
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB".replace(".0 MB", " MB")
    if size >= 1000:
        return f"{size / 1000:.1f} kB".replace(".0 kB", " kB")
    return f"{size} bytes"
