"""Commands that talk to a running API: ``ingest`` and ``batch status``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from scriptorium.cli.context import fail, settings
from scriptorium.states import Lane

EXIT_USAGE = 2
DOCUMENT_TASKS = ("markdown", "free_ocr", "figure")  # scriptorium.acceptance.DocumentTask
Command = TypeVar("Command", bound=Callable[..., Any])


def api_access_options(command: Command) -> Command:
    """``--url`` and ``--api-key``, from the environment when not given."""
    command = click.option(
        "--api-key", envvar="SCRIPTORIUM_API_KEY", show_envvar=True, help="the tenant's API key"
    )(command)
    return click.option(
        "--url",
        envvar="SCRIPTORIUM_API_URL",
        show_envvar=True,
        help="API base URL (default: api.public_url)",
    )(command)


def _api_access(url: str | None, api_key: str | None) -> tuple[str, str] | None:
    if not api_key:
        fail("pass --api-key or set SCRIPTORIUM_API_KEY")
        return None
    return url or settings().api.public_url, api_key


@click.command(
    short_help="Upload files (or ingest s3://source/bucket/prefix) and print document ids.",
    epilog="With --batch NAME the files go into one batch, resumably: running the command again "
    "uploads only files whose content the batch does not have yet, then closes it.",
)
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@api_access_options
@click.option("--batch", "batch_name", help="ingest into the batch with this name (created on first use)")
@click.option(
    "--priority", type=click.Choice([lane.value for lane in Lane]), help="lane (batches default to bulk)"
)
@click.option("--concurrency", type=int, default=4, show_default=True, help="parallel uploads")
@click.option("--watch", is_flag=True, help="for s3://…: follow the batch until it is final")
@click.option("--mode", default="", help="auto or a fixed mode (default: the API's)")
@click.option("--task", type=click.Choice(DOCUMENT_TASKS), default="markdown", show_default=True)
@click.option("--pages", help="page selection, e.g. 1-3,5")
@click.option(
    "--model",
    metavar="FAMILY",
    help="the model that reads them: deepseek-ocr or unlimited-ocr (default: the tenant's, then the fleet's)",
)
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def ingest(
    *,
    paths: tuple[str, ...],
    url: str | None,
    api_key: str | None,
    batch_name: str | None,
    priority: str | None,
    concurrency: int,
    watch: bool,
    mode: str,
    task: str,
    pages: str | None,
    model: str | None,
    no_progress: bool,
) -> int:
    """Upload files and directories (or ingest one s3://source/bucket/prefix) and print document ids.

    Prints `<document id>TAB<path>` on stdout for each accepted file (for s3://…: the batch id).
    """
    from scriptorium.client import ingest_paths, ingest_prefix

    access = _api_access(url, api_key)
    if access is None:
        return EXIT_USAGE
    base_url, key = access
    uris = [path for path in paths if path.startswith("s3://")]
    if uris and len(paths) > 1:
        fail("ingest one s3://source/bucket/prefix at a time, without local paths")
        return EXIT_USAGE
    options: dict[str, Any] = {
        "mode": mode,
        "task": task,
        "pages": pages,
        "priority": priority,
        "model": model,
    }
    if uris:
        return ingest_prefix(
            uris[0],
            base_url=base_url,
            api_key=key,
            batch=batch_name,
            progress=not no_progress,
            watch=watch,
            **options,
        )
    return ingest_paths(
        [Path(path) for path in paths],
        base_url=base_url,
        api_key=key,
        progress=not no_progress,
        batch=batch_name,
        concurrency=concurrency,
        **options,
    )


@click.group()
def batch() -> None:
    """Inspect batches."""


@batch.command("status")
@click.argument("batch_id")
@click.option("--watch", is_flag=True, help="show progress until the batch is final")
@api_access_options
@click.option("--no-progress", is_flag=True, help="no progress bar on stderr")
def batch_status(batch_id: str, watch: bool, url: str | None, api_key: str | None, no_progress: bool) -> int:
    """A batch's state, progress, outcomes and tokens, in one line.

    With --watch: exits 0 when the batch completed, 1 when it failed or was cancelled.
    """
    from scriptorium.client import batch_status as show_batch

    access = _api_access(url, api_key)
    if access is None:
        return EXIT_USAGE
    base_url, key = access
    return show_batch(batch_id, base_url=base_url, api_key=key, watch=watch, progress=not no_progress)
