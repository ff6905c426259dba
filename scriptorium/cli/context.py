"""What every command shares: the settings, read once per command."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from scriptorium.settings import Settings, load_settings


@dataclass
class CommandState:
    loaded: list[Settings] = field(default_factory=list)

    def settings(self) -> Settings:
        if not self.loaded:
            self.loaded.append(load_settings())
        return self.loaded[0]


def settings() -> Settings:
    """This command's settings, read from the environment on first use."""
    return click.get_current_context().ensure_object(CommandState).settings()


def fail(message: str) -> None:
    """Print ``error: message`` on stderr."""
    click.echo(f"error: {message}", err=True)
