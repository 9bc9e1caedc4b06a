"""The README stays true: every status code and every config key a user meets is in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from faxgw.config import Config
from faxgw.domain import codes

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("entry", codes.all_codes(), ids=lambda e: str(e.code))
def test_every_status_code_is_in_the_readme(entry: codes.StatusCode) -> None:
    assert f"| {entry.code} | {entry.name} |" in README


def _keys() -> list[str]:
    keys = []
    for section, field in Config.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            keys.extend(f"[{section}] {name}" for name in model.model_fields)
    return keys


@pytest.mark.parametrize("key", _keys())
def test_every_config_key_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in README


def test_quick_start_names_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    assert "make demo" in quick and "make test" in quick
