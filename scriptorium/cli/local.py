"""Commands that run in this process on local files, with no services: ``ocr``, ``route``, ``dev``.

The option parsing lives here; the work is in worker/engine/cli.py and worker/routing/cli.py,
imported only when the command runs (so ``--help`` never loads the engine).
"""

from __future__ import annotations

from pathlib import Path

import click

from scriptorium.cli.context import settings
from scriptorium.cli.remote import DOCUMENT_TASKS
from scriptorium.model_families import DEFAULT_MODEL_FAMILY, MODEL_FAMILY_NAMES, ModelFamily
from scriptorium.modes import Mode
from scriptorium.policy import AUTO

MODES = [mode.value for mode in Mode]
FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(
    short_help="Run the engine locally on files, no services needed.",
    epilog="Engine settings other than the model directory come from SCRIPTORIUM_ENGINE__*. "
    "Exit status: 0 all read, 1 a file or page failed, 2 the model cannot be used.",
)
@click.argument("paths", nargs=-1, required=True, type=FILES, metavar="PATH...")
@click.option("--model", required=True, help="checkpoint directory (or hub id with network)")
@click.option(
    "--mode",
    type=click.Choice([AUTO, *MODES]),
    default=AUTO,
    show_default=True,
    help="auto: route each page like the fleet (blank pages are skipped); or one fixed mode",
)
@click.option("--task", type=click.Choice(DOCUMENT_TASKS), default="markdown", show_default=True)
@click.option("--pages", help="page selection, e.g. 1-3,5")
@click.option("--json", "json_output", is_flag=True, help="one JSON object per file and line")
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: engine settings)")
def ocr(
    *,
    paths: tuple[Path, ...],
    model: str,
    mode: str,
    task: str,
    pages: str | None,
    json_output: bool,
    device: str | None,
) -> int:
    """Run DeepSeek-OCR locally on files and print markdown (or JSON), no services needed.

    Reads the files the fleet accepts (PDF, TIFF, PNG, JPEG, WebP …) under the same intake limits.
    A progress bar over pages goes to stderr when it is a terminal (not with --json).
    """
    from worker.engine.cli import OcrRequest, run_ocr

    request = OcrRequest(
        paths=paths,
        model=model,
        mode=mode,
        task=task,
        pages=pages,
        json_output=json_output,
        device=device,
        progress=not json_output,
    )
    return run_ocr(request, settings())


@click.command(
    short_help="Dry-run mode routing and forecast vision tokens.",
    epilog="Exit status: 0 all routed, 1 a file was rejected, 2 the policy or model is unusable.",
)
@click.argument("paths", nargs=-1, required=True, type=FILES, metavar="PATH...")
@click.option("--policy", help='policy JSON or @file holding it, e.g. {"max_mode": "large"}')
@click.option("--mode", type=click.Choice([AUTO, *MODES]), help="auto or a fixed mode")
@click.option("--target-ratio", type=float, help="most predicted text tokens per vision token")
@click.option("--min-mode", type=click.Choice(MODES))
@click.option("--max-mode", type=click.Choice(MODES))
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    help="model directory: count text tokens with its tokenizer",
)
@click.option(
    "--model-family",
    "model_families",
    type=click.Choice(MODEL_FAMILY_NAMES),
    multiple=True,
    help="forecast for this model family (repeat for several; default: the default family)",
)
@click.option("--pages", help="page selection, e.g. 1-3,5")
@click.option("--password", help="password of an encrypted PDF")
@click.option("--json", "json_output", is_flag=True, help="one JSON object per file and line")
def route(
    *,
    paths: tuple[Path, ...],
    model_families: tuple[str, ...],
    policy: str | None,
    mode: str | None,
    target_ratio: float | None,
    min_mode: str | None,
    max_mode: str | None,
    model: Path | None,
    pages: str | None,
    password: str | None,
    json_output: bool,
) -> int:
    """Dry-run mode routing: per-page facts, modes and vision-token cost, to forecast before ingesting.

    Nothing is read by the engine. Prints per page the facts, predicted text tokens, the chosen
    mode and its vision tokens, then the totals against reading every page in base and in gundam.
    A progress bar over pages goes to stderr when it is a terminal (not with --json).
    """
    from worker.routing.cli import RouteRequest, run_route

    request = RouteRequest(
        paths=paths,
        policy=policy,
        mode=mode,
        target_ratio=target_ratio,
        min_mode=min_mode,
        max_mode=max_mode,
        model=model,
        model_families=tuple(ModelFamily(family) for family in model_families) or (DEFAULT_MODEL_FAMILY,),
        pages=pages,
        password=password,
        json_output=json_output,
        progress=not json_output,
    )
    return run_route(request, settings())


@click.group()
def dev() -> None:
    """Developer tools."""


@dev.command("tiny-checkpoint", short_help="Write a tiny random-weight checkpoint.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--family",
    type=click.Choice(MODEL_FAMILY_NAMES),
    default=DEFAULT_MODEL_FAMILY.value,
    show_default=True,
    help="Which model family's published layout to write.",
)
def tiny_checkpoint(directory: Path, seed: int, family: str) -> int:
    """Write a tiny random-weight checkpoint of a model family in its published layout to DIRECTORY."""
    from worker.engine.deepseek.tiny_checkpoint import write_tiny_checkpoint

    click.echo(str(write_tiny_checkpoint(directory, seed=seed, family=ModelFamily(family))))
    return 0
