"""What every configuration section shares: strict models, and the value types several
sections use (an optional file, a listening address)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from .values import split_listen


class Section(BaseModel):
    """One ``[section]``: every key checked, nothing changed after loading."""

    # A misspelt key must stop the gateway, not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


def _listen(value: str) -> str:
    if value.strip():
        split_listen(value)
    return value.strip()


#: A file that may be left unset; ``""`` in the file means unset.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]
#: ``host:port`` (``[v6]:port``), or ``""`` for none.
ListenAddress = Annotated[str, AfterValidator(_listen)]
