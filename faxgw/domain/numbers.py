"""Fax numbers: parsing and normalising with phonenumbers, and the service address."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers

from . import codes
from .errors import NumberError


@dataclass(frozen=True, slots=True)
class FaxNumber:
    """A validated fax number in the forms an address template can use."""

    e164: str       # +4930123456
    digits: str     # 4930123456
    national: str   # 030123456

    def address(self, template: str) -> str:
        """The service's recipient address, e.g. ``{e164}@fax.example.net``."""
        return template.format(e164=self.e164, digits=self.digits, national=self.national)


@functools.lru_cache(maxsize=4096)
def parse_number(text: str, region: str) -> FaxNumber:
    """Parse ``text`` as a telephone number; numbers without ``+`` belong to ``region``.

    Raises NumberError (code 400) for anything that is not a valid number, so that an
    invalid number fails its job before anything is sent.
    """
    # Cached: a burst of jobs is mostly a few numbers, and phonenumbers takes a while.
    cleaned = text.strip()
    if cleaned.startswith("00"):
        # The international call prefix most of the world uses; phonenumbers wants "+".
        cleaned = "+" + cleaned[2:]
    try:
        parsed = phonenumbers.parse(cleaned, region.upper())
    except phonenumbers.NumberParseException as exc:
        # str(exc) reads "(1) The string supplied did not seem to be a phone number."
        cause = str(exc).split(") ", 1)[-1].rstrip(".")
        raise NumberError(f"fax number {text!r} is not a telephone number: {cause}",
                          code=codes.INVALID_NUMBER) from None
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"fax number {text!r} is not a valid number",
                          code=codes.INVALID_NUMBER)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return FaxNumber(
        e164=e164,
        digits=e164.lstrip("+"),
        national="".join(ch for ch in national if ch.isdigit()),
    )
