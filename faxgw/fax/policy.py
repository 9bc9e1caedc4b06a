"""Number policy: which fax numbers may be dialled, and how numbers appear in logs.

Rules, applied in this order to the number in E.164 form (``+4930123456``):

1. Emergency numbers are refused. With ``[numbers] deny`` unset this is part of the default
   deny list; with a deny list of your own it still holds, because no fax machine answers an
   emergency line and a fax call there ties it up.
2. ``[numbers] deny``: a number starting with one of its prefixes is refused. Unset, the
   default deny list applies: premium-rate and shared-cost numbers as phonenumbers classifies
   them, plus the prefixes in :data:`DEFAULT_DENY_PREFIXES`. Deny wins over allow.
3. ``[numbers] allow``: when not empty, only numbers starting with one of its prefixes pass.

Prefixes are written in international form (``+49900``, or ``0049900``); spaces, dashes,
dots and brackets are ignored. A refused number raises :class:`~faxgw.domain.errors.NumberError`
with code 401 and a message naming the rule.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import phonenumbers
from phonenumbers import PhoneNumberType, shortnumberinfo

from ..config import NumbersConfig
from ..domain import codes
from ..domain.errors import ConfigError, NumberError
from ..domain.numbers import FaxNumber, parse_number

#: What replaces a masked digit in logs: ASCII, so log files stay plain text everywhere.
MASK_CHAR = "x"

#: Prefixes refused by default beyond what phonenumbers classifies, per region. phonenumbers
#: only classifies numbers it finds valid; these also catch numbers of unusual length in
#: ranges that are never a fax line, or that cost the caller a premium.
DEFAULT_DENY_PREFIXES: dict[str, tuple[tuple[str, str], ...]] = {
    # Germany, Bundesnetzagentur numbering plan: 0900 premium-rate services
    # (Premium-Dienste), 0137 mass-traffic / televoting services (Massenverkehrsdienste),
    # 118xy directory enquiries (Auskunftsdienste).
    "DE": (
        ("+49900", "a premium-rate number"),
        ("+49137", "a mass-call (televoting) number"),
        ("+49118", "a directory enquiry number"),
    ),
    # Switzerland, OFCOM: 0900 / 0901 / 0906 value-added services.
    "CH": (
        ("+41900", "a premium-rate number"),
        ("+41901", "a premium-rate number"),
        ("+41906", "a premium-rate number"),
    ),
    # United Kingdom, Ofcom: 09 premium-rate services.
    "GB": (("+449", "a premium-rate number"),),
    # North American Numbering Plan: the 900 service code is premium-rate.
    "US": (("+1900", "a premium-rate number"),),
    "CA": (("+1900", "a premium-rate number"),),
}

_TYPE_WORDS = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
}
_SEPARATORS = re.compile(r"[\s\-./()]")
_PREFIX = re.compile(r"\+\d{1,15}")


def check_number(number: FaxNumber, numbers: NumbersConfig, region: str) -> None:
    """Raise :class:`NumberError` (code 401) if ``number`` may not be dialled.

    ``region`` is ``[service] region``: its default deny prefixes apply besides those of the
    number's own country. The message names the rule, e.g. ``+49110 is an emergency number
    (default deny list for DE)``. A malformed prefix in ``numbers`` raises ConfigError.
    """
    deny = None if numbers.deny is None else _prefixes(numbers.deny, "deny")
    allow = _prefixes(numbers.allow, "allow")
    e164 = number.e164
    emergency_in = _emergency_region(e164)
    if emergency_in is not None:
        rule = (f"default deny list for {emergency_in}" if deny is None
                else "emergency numbers are refused whatever [numbers] deny says")
        _refuse(f"{e164} is an emergency number ({rule})")
    if deny is None:
        default = _default_deny(e164, region)
        if default is not None:
            what, where = default
            _refuse(f"{e164} is {what} (default deny list for {where})")
    else:
        denied = _longest_match(e164, deny)
        if denied is not None:
            _refuse(f"{e164} is in [numbers] deny ({denied})")
    if allow and _longest_match(e164, allow) is None:
        _refuse(f"{e164} is not in [numbers] allow ({', '.join(allow)})")


def parse_and_check(text: str, numbers: NumbersConfig, region: str) -> FaxNumber:
    """Parse ``text`` as :func:`~faxgw.domain.numbers.parse_number` does, then :func:`check_number`.

    phonenumbers calls ``110`` or ``+49 112`` invalid; such numbers are refused as the
    emergency numbers they are (401), not as typos (400).
    """
    try:
        number = parse_number(text, region)
    except NumberError:
        emergency = _emergency_in_text(text, region)
        if emergency is not None:
            e164, emergency_in = emergency
            _refuse(f"{e164} is an emergency number in {emergency_in} "
                    "(emergency numbers are always refused)")
        raise
    check_number(number, numbers, region)
    return number


def _emergency_in_text(text: str, region: str) -> tuple[str, str] | None:
    """``(e164, region)`` when ``text``, valid or not, is an emergency number."""
    cleaned = _SEPARATORS.sub("", text.strip())
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        parsed = phonenumbers.parse(cleaned, region.upper())
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    emergency_in = _emergency_region(e164)
    return None if emergency_in is None else (e164, emergency_in)


def mask(text: str, digits: int) -> str:
    """``text`` with its last ``digits`` digits replaced by ``x``, for logs.

    ``mask("+4930123456", 4)`` is ``+493012xxxx``; separators stay where they are. Of an
    address only the part before ``@`` is masked (``+493012xxxx@fax.tc``). ``digits`` 0
    leaves the text as it is; more digits than there are masks them all.
    """
    if digits <= 0:
        return text
    local, at, domain = text.rpartition("@") if "@" in text else (text, "", "")
    characters = list(local)
    remaining = digits
    for index in range(len(characters) - 1, -1, -1):
        if remaining == 0:
            break
        if characters[index].isdigit():
            characters[index] = MASK_CHAR
            remaining -= 1
    return "".join(characters) + at + domain


def _refuse(message: str) -> None:
    raise NumberError(message, code=codes.NUMBER_REFUSED)


def _prefixes(entries: list[str], key: str) -> list[str]:
    """The entries of ``[numbers] key`` as E.164 prefixes; ConfigError for a bad one."""
    prefixes: list[str] = []
    for entry in entries:
        prefix = _SEPARATORS.sub("", entry)
        if prefix.startswith("00"):
            prefix = "+" + prefix[2:]
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError(
                f"[numbers] {key}: {entry!r} is not a prefix in international form "
                "such as +49900"
            )
        prefixes.append(prefix)
    return prefixes


def _longest_match(e164: str, prefixes: list[str]) -> str | None:
    matches = [prefix for prefix in prefixes if e164.startswith(prefix)]
    return max(matches, key=len) if matches else None


def _parsed(e164: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None


@functools.lru_cache(maxsize=4096)
def _emergency_region(e164: str) -> str | None:
    """The region where ``e164`` is an emergency number, if it is one."""
    parsed = _parsed(e164)
    if parsed is None:
        return None
    # Emergency numbers are short codes dialled without a country code: look at the
    # national part in each region sharing the country code (+1 is US, CA and more).
    national = phonenumbers.national_significant_number(parsed)
    for candidate in phonenumbers.region_codes_for_country_code(parsed.country_code or 0):
        if shortnumberinfo.is_emergency_number(national, candidate):
            return candidate
    return None


def _default_deny(e164: str, region: str) -> tuple[str, str] | None:
    """What the default deny list calls ``e164`` and for which region, if it lists it."""
    parsed = _parsed(e164)
    own_regions: list[str] = []
    if parsed is not None:
        own_regions = list(phonenumbers.region_codes_for_country_code(parsed.country_code or 0))
        kind = phonenumbers.number_type(parsed)
        if kind in _TYPE_WORDS:
            where = phonenumbers.region_code_for_number(parsed) or region.upper()
            return _TYPE_WORDS[kind], where
    for candidate in dict.fromkeys([region.upper(), *own_regions]):
        for prefix, what in DEFAULT_DENY_PREFIXES.get(candidate, ()):
            if e164.startswith(prefix):
                return what, candidate
    return None


def mask_numbers(text: str, numbers: Iterable[str], digits: int) -> str:
    """``text`` (an error, a server reply) with each of ``numbers`` in it masked as
    :func:`mask` does, for logs."""
    if digits <= 0:
        return text
    for number in sorted({n for n in numbers if n}, key=len, reverse=True):
        text = text.replace(number, mask(number, digits))
    return text
