"""Number policy: allow and deny lists, the default deny list, masking."""

from __future__ import annotations

import pytest

from faxgw.config import NumbersConfig
from faxgw.domain import codes
from faxgw.domain.errors import ConfigError, NumberError
from faxgw.domain.numbers import FaxNumber, parse_number
from faxgw.fax.policy import check_number, mask, parse_and_check


def refused(text: str, numbers: NumbersConfig | None = None, region: str = "DE") -> str:
    """The refusal message for ``text`` (fails the test if it passes)."""
    with pytest.raises(NumberError) as caught:
        parse_and_check(text, numbers or NumbersConfig(), region)
    assert caught.value.code == codes.NUMBER_REFUSED
    return caught.value.message


def short(e164: str, national: str) -> FaxNumber:
    """A FaxNumber as parse_number cannot make it: short codes are not valid numbers."""
    return FaxNumber(e164=e164, digits=e164.lstrip("+"), national=national)


# -- the default deny list -----------------------------------------------------------------

@pytest.mark.parametrize("text", ["110", "112", "+49 110", "0049112"])
def test_german_emergency_numbers_are_refused(text: str) -> None:
    message = refused(text)
    assert "is an emergency number in DE" in message


def test_us_emergency_number_is_refused() -> None:
    assert refused("911", region="US").startswith("+1911 is an emergency number in US")


def test_emergency_numbers_via_check_number_name_the_default_list() -> None:
    with pytest.raises(NumberError) as caught:
        check_number(short("+49110", "110"), NumbersConfig(), "DE")
    assert caught.value.message == "+49110 is an emergency number (default deny list for DE)"
    with pytest.raises(NumberError) as caught:
        check_number(short("+1911", "911"), NumbersConfig(), "US")
    assert caught.value.message == "+1911 is an emergency number (default deny list for US)"


def test_emergency_numbers_stay_refused_with_a_deny_list_of_ones_own() -> None:
    numbers = NumbersConfig(deny=[])
    with pytest.raises(NumberError) as caught:
        check_number(short("+49112", "112"), numbers, "DE")
    assert "refused whatever [numbers] deny says" in caught.value.message


def test_premium_rate_numbers_are_refused() -> None:
    assert refused("+49 900 1234567") == (
        "+499001234567 is a premium-rate number (default deny list for DE)")
    assert refused("+1 900 555 1234", region="US") == (
        "+19005551234 is a premium-rate number (default deny list for US)")


def test_shared_cost_numbers_are_refused() -> None:
    assert "shared-cost number" in refused("+49 180 12345678")


def test_explicit_prefixes_catch_what_phonenumbers_does_not_classify() -> None:
    # 0137 (mass calls) numbers: refused by the prefix list even as a bare FaxNumber.
    with pytest.raises(NumberError) as caught:
        check_number(short("+4913712345", "013712345"), NumbersConfig(), "DE")
    assert caught.value.message == (
        "+4913712345 is a mass-call (televoting) number (default deny list for DE)")


def test_ordinary_numbers_pass() -> None:
    numbers = NumbersConfig()
    assert parse_and_check("+49 30 123456", numbers, "DE").e164 == "+4930123456"
    assert parse_and_check("030 123456", numbers, "DE").e164 == "+4930123456"
    assert parse_and_check("+1 212 555 8596", numbers, "DE").e164 == "+12125558596"


def test_invalid_numbers_keep_their_own_code() -> None:
    with pytest.raises(NumberError) as caught:
        parse_and_check("12", NumbersConfig(), "DE")
    assert caught.value.code == codes.INVALID_NUMBER


# -- allow and deny ------------------------------------------------------------------------

def test_allow_list_admits_only_its_prefixes() -> None:
    numbers = NumbersConfig(allow=["+4930", "0049 89"])
    assert parse_and_check("+4930123456", numbers, "DE").e164 == "+4930123456"
    assert parse_and_check("+49891234567", numbers, "DE").e164 == "+49891234567"
    assert refused("+4940123456", numbers) == (
        "+4940123456 is not in [numbers] allow (+4930, +4989)")


def test_deny_list_refuses_its_prefixes_and_replaces_the_default() -> None:
    numbers = NumbersConfig(deny=["+49 30 12"])
    assert refused("+4930123456", numbers) == "+4930123456 is in [numbers] deny (+493012)"
    # A deny list of one's own replaces the default one: premium-rate numbers pass now.
    assert parse_and_check("+499001234567", numbers, "DE").e164 == "+499001234567"


def test_deny_wins_over_allow() -> None:
    numbers = NumbersConfig(allow=["+49"], deny=["+4930"])
    assert "in [numbers] deny" in refused("+4930123456", numbers)
    # The default deny list also wins over an allow list.
    assert "premium-rate" in refused("+499001234567", NumbersConfig(allow=["+49900"]))


def test_empty_allow_list_allows_all() -> None:
    number = parse_number("+12125558596", "US")
    check_number(number, NumbersConfig(allow=[]), "DE")


@pytest.mark.parametrize("entry", ["0900", "+49-abc", "", "+"])
def test_a_prefix_not_in_international_form_is_a_config_error(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_number(parse_number("+4930123456", "DE"), NumbersConfig(deny=[entry]), "DE")
    assert "[numbers] deny" in str(caught.value)
    assert "international form" in str(caught.value)


# -- masking -------------------------------------------------------------------------------

def test_mask_hides_the_last_digits() -> None:
    assert mask("+4930123456", 4) == "+493012xxxx"
    assert mask("+49 30 123456", 4) == "+49 30 12xxxx"


def test_mask_in_an_address_only_touches_the_number() -> None:
    assert mask("+4930123456@fax2.example.net", 3) == "+4930123xxx@fax2.example.net"
    assert mask("FAX=+4930123456@gw.example", 2) == "FAX=+49301234xx@gw.example"


def test_mask_zero_and_more_digits_than_there_are() -> None:
    assert mask("+4930123456", 0) == "+4930123456"
    assert mask("+4930", 10) == "+xxxx"
