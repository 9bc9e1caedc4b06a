"""Service profiles: every profile's rules and address, [service] overrides, unknown names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faxgw.config import ServiceConfig, config_from_dict
from faxgw.domain.errors import ConfigError
from faxgw.domain.numbers import parse_number
from faxgw.fax.profiles import PROFILES, ServiceRules, format_bytes, rules_for

BERLIN = parse_number("+4930123456", "DE")
NEW_YORK = parse_number("+12125558596", "US")


def service(tmp_path: Path, **keys: Any) -> ServiceConfig:
    """``[service]`` as the config loader builds it from a file holding ``keys``."""
    return config_from_dict({"service": keys}, base=tmp_path).service


def test_generic_takes_the_service_address_and_has_no_limits(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, address="{digits}@fax.example.org"))
    assert rules.profile == "generic"
    assert rules.attach_as == "pdf"
    assert (rules.max_pages, rules.max_attachment_bytes, rules.max_subject_chars) == (
        None, None, None)
    assert rules.body is True and rules.cover is False
    assert rules.address_for(BERLIN) == "4930123456@fax.example.org"
    assert rules.address_for(NEW_YORK) == "12125558596@fax.example.org"


def test_generic_with_the_default_address(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path))
    assert rules.address_for(BERLIN) == "+4930123456@fax.example.net"


def test_rfc3192_address_uses_the_gateway_of_the_service_address(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, profile="rfc3192", address="{e164}@gw.example.org"))
    # RFC 3192: FAX=<global-phone>@<gateway>, global-phone being "+" and the digits.
    assert rules.address_for(BERLIN) == "FAX=+4930123456@gw.example.org"
    assert rules.address_for(NEW_YORK) == "FAX=+12125558596@gw.example.org"
    assert rules.attach_as == "tiff"
    assert rules.tiff_compression == "group3"  # RFC 3965 simple mode: TIFF profile S, MH
    assert rules.body is False
    assert "address" not in rules.overridden


def test_interfax_rules_and_address(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, profile="interfax"))
    assert rules.address_for(NEW_YORK) == "+12125558596@fax.tc"
    assert rules.address_for(BERLIN) == "+4930123456@fax.tc"
    assert rules.attach_as == "pdf"
    assert rules.max_pages == 100
    assert rules.max_attachment_bytes == 20_000_000
    assert rules.max_subject_chars == 60
    assert rules.body is False
    assert rules.overridden == frozenset()
    assert rules.origin("max_pages") == "interfax profile"


def test_every_profile_names_its_source_and_resolves(tmp_path: Path) -> None:
    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.source and profile.description
        rules = rules_for(service(tmp_path, profile=name))
        assert isinstance(rules, ServiceRules)
        address = rules.address_for(BERLIN)
        assert "4930123456" in address and "@" in address
        assert "{" not in address


def test_service_keys_override_the_profile(tmp_path: Path) -> None:
    rules = rules_for(service(
        tmp_path, profile="interfax", max_pages=20, max_subject_chars=40, attach_as="tiff",
        tiff_compression="group3", body=True, cover=True, paper="Letter",
        subject="Fax {number}", cover_template="cover.txt"))
    assert rules.max_pages == 20
    assert rules.max_subject_chars == 40
    assert rules.attach_as == "tiff" and rules.tiff_compression == "group3"
    assert rules.body is True and rules.cover is True
    assert rules.paper == "Letter"
    assert rules.subject_for("+4930123456") == "Fax +4930123456"
    assert rules.cover_template == (tmp_path / "cover.txt").resolve()
    # What was not set stays the profile's.
    assert rules.max_attachment_bytes == 20_000_000
    assert rules.overridden == {"max_pages", "max_subject_chars", "attach_as",
                                "tiff_compression", "body", "cover"}
    assert rules.origin("max_pages") == "[service] max_pages"


def test_a_written_address_overrides_the_profiles_address(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, profile="interfax", address="{e164}@fax.example.com"))
    assert rules.address_for(BERLIN) == "+4930123456@fax.example.com"
    assert "address" in rules.overridden


def test_false_and_zero_overrides_count(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, profile="generic", body=False))
    assert rules.body is False and "body" in rules.overridden
    # max_attachment_bytes = 0: no limit of faxgw's own, even where the profile has one.
    rules = rules_for(service(tmp_path, profile="interfax", max_attachment_bytes=0))
    assert rules.max_attachment_bytes is None


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        rules_for(service(tmp_path, profile="efax"))
    assert str(caught.value) == (
        "[service] profile: unknown profile 'efax' (known: generic, rfc3192, interfax)")


def test_rules_are_frozen_and_serialisable(tmp_path: Path) -> None:
    rules = rules_for(service(tmp_path, profile="rfc3192"))
    with pytest.raises(AttributeError):
        rules.max_pages = 3  # type: ignore[misc]
    data = rules.to_json()
    assert data["profile"] == "rfc3192" and data["attach_as"] == "tiff"


@pytest.mark.parametrize(("size", "text"), [
    (20_000_000, "20 MB"), (27_140_000, "27.1 MB"), (20 * 1024 * 1024, "20 MiB"),
    (45_200, "45.2 kB"), (512, "512 bytes"),
])
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text
