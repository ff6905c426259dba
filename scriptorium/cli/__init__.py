"""The ``scriptorium`` command: the composition root of every process.

Each sub-command builds the settings once (:func:`scriptorium.cli.context.settings`), then
imports only what it runs: the API never imports torch; ``ocr`` and ``route`` need no services.
Commands return their exit code; the root group exits with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from scriptorium import __version__
from scriptorium.cli.local import dev, ocr, route
from scriptorium.cli.remote import batch, ingest
from scriptorium.cli.services import api, beat, migrate, openapi, worker, worker_health
from scriptorium.cli.tenants import tenant

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="scriptorium")
def cli() -> None:
    """Document OCR fleet on DeepSeek-OCR."""


@cli.result_callback()
def _exit_with(code: int | None) -> None:
    if code:
        click.get_current_context().exit(code)


for command in (api, worker, worker_health, beat, migrate, tenant, ingest, batch, ocr, route, dev, openapi):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exits the process with the command's exit code."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="scriptorium")
