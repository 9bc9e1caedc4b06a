"""``[service]``: the Internet fax service that receives faxes by email."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from ..domain import codes
from .base import OptionalPath, Section
from .values import check_template

#: The codes a fax service's report may end a job with (``confirm_failure``).
REMOTE_CODES = frozenset({codes.REMOTE_BUSY, codes.REMOTE_NO_ANSWER, codes.REMOTE_NOT_FAX,
                          codes.REMOTE_REJECTED, codes.REMOTE_PARTIAL,
                          codes.REMOTE_INVALID_NUMBER})


def check_pattern(pattern: str) -> None:
    """Refuse a regular expression that does not compile, naming it."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None



class ServiceConfig(Section):
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
    cover_template: OptionalPath = None
    #: Reports from the service that say a fax was delivered (regular expressions, matched
    #: case-insensitively against the report's text), for services that send free text.
    confirm_success: list[str] = Field(default_factory=list)
    #: Reports that say it failed: regular expression = status code (540-546).
    confirm_failure: dict[str, int] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _address_has_number(cls, value: str) -> str:
        if not any(f"{{{name}}}" in value for name in ("e164", "digits", "national")):
            raise ValueError("must contain {e164}, {digits} or {national}")
        if "@" not in value:
            raise ValueError("must be an email address such as {e164}@fax.example.net")
        check_template(value, "{e164}, {digits} or {national}",
                        e164="+4930123456", digits="4930123456", national="030123456")
        return value

    @field_validator("subject")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        check_template(value, "{number}", number="+4930123456")
        return value

    @field_validator("confirm_success")
    @classmethod
    def _success_rules(cls, value: list[str]) -> list[str]:
        for pattern in value:
            check_pattern(pattern)
        return value

    @field_validator("confirm_failure")
    @classmethod
    def _failure_rules(cls, value: dict[str, int]) -> dict[str, int]:
        for pattern, code in value.items():
            check_pattern(pattern)
            if code not in REMOTE_CODES:
                raise ValueError(f"{pattern!r} = {code}: use a code for a fax service's result "
                                 f"({', '.join(map(str, sorted(REMOTE_CODES)))})")
        return value

    @field_validator("region")
    @classmethod
    def _region_known(cls, value: str) -> str:
        import phonenumbers

        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a two-letter region code such as DE or US")
        return value.upper()
