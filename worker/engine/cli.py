"""Local commands around the engine: ``scriptorium ocr`` and ``scriptorium dev tiny-checkpoint``.

``ocr`` reads files the fleet accepts (PDF, TIFF, PNG, JPEG, WebP ...) with the same intake
limits, routes pages like the fleet (``--mode auto``: the default routing policy; blank pages are
skipped) or reads them in one fixed mode, runs the engine in this process and prints markdown,
or one JSON object per file and line. Engine settings other than the model directory come from
``SCRIPTORIUM_ENGINE__*``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scriptorium.errors import InputRejected
from scriptorium.modes import Mode
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.settings import Settings, load_settings
from worker.engine.base import PageFailed, PageInput, PageResult, PromptTask

if TYPE_CHECKING:
    from worker.engine.deepseek.engine import DeepSeekOcrEngine
    from worker.prepare.document import RenderedPage

PAGE_SPLIT = "\n\n<--- Page Split --->\n\n"  # how the reference joins pages of one document
AUTO_MODE = "auto"
CLI_TASKS = (PromptTask.MARKDOWN, PromptTask.FREE_OCR, PromptTask.FIGURE)
EXIT_OK, EXIT_PAGE_FAILED, EXIT_UNUSABLE = 0, 1, 2


@dataclass(frozen=True)
class SkippedPage:
    """A page the router sends to no mode (blank): not read, as in the fleet."""

    page_no: int
    reason: str


Outcome = PageResult | PageFailed | SkippedPage
ModeChoice = tuple[Mode | None, str]


def ocr_command(argv: list[str]) -> int:
    args = _ocr_parser().parse_args(argv)
    settings = load_settings()
    engine_settings = settings.engine.model_copy(
        update={"model_path": args.model, **({"device": args.device} if args.device else {})}
    )
    from worker.engine.deepseek.checkpoint import CheckpointError
    from worker.engine.deepseek.engine import DeepSeekOcrEngine

    try:
        engine = DeepSeekOcrEngine(engine_settings)
    except (CheckpointError, ValueError) as error:
        print(f"scriptorium ocr: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    status = EXIT_OK
    for path in args.paths:
        try:
            outcomes, sizes = _read_file(engine, settings, path, args)
        except InputRejected as rejection:
            print(f"{path}: {rejection.reason}: {rejection.message}", file=sys.stderr)
            status = EXIT_PAGE_FAILED
            continue
        for outcome in outcomes:
            if isinstance(outcome, PageFailed):
                print(f"{path}: {outcome}", file=sys.stderr)
                status = EXIT_PAGE_FAILED
        if args.json:
            print(json.dumps(_file_json(path, outcomes, sizes), ensure_ascii=False))
        else:
            print(
                PAGE_SPLIT.join(
                    _markdown(outcome) for outcome in outcomes if not isinstance(outcome, PageFailed)
                )
            )
    return status


def tiny_checkpoint_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scriptorium dev tiny-checkpoint",
        description="Write a tiny random-weight DeepSeek-OCR checkpoint in the published layout.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from worker.engine.deepseek.tiny_checkpoint import write_tiny_checkpoint

    print(write_tiny_checkpoint(args.directory, seed=args.seed))
    return EXIT_OK


def _ocr_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scriptorium ocr", description="Run DeepSeek-OCR locally on files.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--model", required=True, help="checkpoint directory (or hub id with network)")
    parser.add_argument("--mode", default=AUTO_MODE, choices=[AUTO_MODE, *(mode.value for mode in Mode)])
    parser.add_argument(
        "--task", default=PromptTask.MARKDOWN.value, choices=[task.value for task in CLI_TASKS]
    )
    parser.add_argument("--pages", help="page selection, e.g. 1-3,5")
    parser.add_argument("--json", action="store_true", help="one JSON object per file and line")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: engine settings)")
    return parser


def _read_file(
    engine: DeepSeekOcrEngine, settings: Settings, path: Path, args: argparse.Namespace
) -> tuple[list[Outcome], dict[int, tuple[int, int]]]:
    from worker.prepare.render import open_document

    choose = _mode_chooser(args.mode, settings, args.model)
    outcomes: list[Outcome] = []
    sizes: dict[int, tuple[int, int]] = {}
    with open_document(path, settings.prepare) as document:
        selected = resolve_page_selection(args.pages, document.info.page_count)
        for chunk in _chunks(document.render(selected), settings.engine.max_batch_pages):
            inputs: list[PageInput] = []
            for page in chunk:
                sizes[page.page_no] = page.image.size
                mode, reason = choose(page)
                if mode is None:
                    outcomes.append(SkippedPage(page.page_no, reason))
                else:
                    inputs.append(
                        PageInput(
                            page_no=page.page_no, image=page.image, mode=mode, task=PromptTask(args.task)
                        )
                    )
            outcomes.extend(engine.run_outcomes(inputs))
    return sorted(outcomes, key=lambda outcome: outcome.page_no), sizes


def _mode_chooser(
    requested: str, settings: Settings, model_path: str
) -> Callable[[RenderedPage], ModeChoice]:
    """A fixed mode, or the fleet's router with the default policy for ``auto``."""
    if requested != AUTO_MODE:
        fixed = Mode(requested)
        return lambda page: (fixed, f"fixed mode {fixed}")
    from scriptorium.policy import RoutingPolicy
    from worker.routing.decide import route_page
    from worker.routing.tokens import token_counter

    model_dir = Path(model_path)
    counter = token_counter(model_dir if model_dir.is_dir() else None)
    policy = RoutingPolicy()

    def route(page: RenderedPage) -> ModeChoice:
        decision = route_page(
            page.image,
            page.text_layer,
            policy,
            counter=counter,
            min_crops=settings.engine.min_crops,
            max_crops=settings.engine.max_crops,
        )
        return decision.mode, decision.reason

    return route


def _chunks(pages: Iterator[RenderedPage], size: int) -> Iterator[list[RenderedPage]]:
    chunk: list[RenderedPage] = []
    for page in pages:
        chunk.append(page)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _markdown(outcome: PageResult | SkippedPage) -> str:
    return outcome.markdown if isinstance(outcome, PageResult) else ""


def _file_json(path: Path, outcomes: Sequence[Outcome], sizes: dict[int, tuple[int, int]]) -> dict[str, Any]:
    return {"path": str(path), "pages": [_page_json(outcome, sizes[outcome.page_no]) for outcome in outcomes]}


def _page_json(outcome: Outcome, size: tuple[int, int]) -> dict[str, Any]:
    width, height = size
    if isinstance(outcome, PageFailed):
        return {"page_no": outcome.page_no, "width": width, "height": height, "error": outcome.message}
    if isinstance(outcome, SkippedPage):
        return {
            "page_no": outcome.page_no,
            "width": width,
            "height": height,
            "mode": None,
            "grid": None,
            "tokens": None,
            "finished": None,
            "markdown": "",
            "blocks": [],
            "skipped": outcome.reason,
        }
    tokens = outcome.tokens
    return {
        "page_no": outcome.page_no,
        "width": width,
        "height": height,
        "mode": outcome.mode.value,
        "grid": list(outcome.grid) if outcome.grid is not None else None,
        "tokens": {
            "vision": tokens.vision,
            "placeholders": tokens.placeholders,
            "valid": tokens.valid,
            "prompt": tokens.prompt,
            "output": tokens.output,
        },
        "finished": outcome.finished,
        "markdown": outcome.markdown,
        "blocks": [
            {"label": block.label, "boxes": [list(box) for box in block.boxes], "text": block.text}
            for block in outcome.blocks
        ],
    }
