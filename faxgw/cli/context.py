"""What every command gets from the top-level ``faxgw`` group."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click

from ..config import Config, load_config


@dataclass
class CliContext:
    """Settings shared by all commands; the config is loaded on first use."""

    config_path: Path | None = None
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The validated configuration (raises ConfigError, which main() prints)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


pass_cli = click.make_pass_decorator(CliContext)
