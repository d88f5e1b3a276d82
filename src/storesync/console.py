"""What every command line of the package shares (`storesync`, `storesync emulator`): the
consoles, settings and network loading that exit with the configuration error's message (shown
as text, never read as markup)."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from storesync.config import ConfigError, NetworkConfig, Settings
from storesync.logs import configure_logging
from storesync.terminal import escape

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment, exiting with the config error's message if invalid."""
    try:
        settings = Settings.load()
    except ConfigError as err:
        fail(str(err))
    configure_logging(settings.log_level, settings.log_format)
    return settings


def load_network(settings: Settings) -> NetworkConfig:
    try:
        return NetworkConfig.load(settings.config_file)
    except ConfigError as err:
        fail(str(err))
