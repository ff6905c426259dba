"""``scriptorium ocr``: the engine in this process on local files (options: scriptorium/cli/local.py).

Reads files the fleet accepts (PDF, TIFF, PNG, JPEG, WebP ...) with the same intake limits,
routes pages like the fleet (``auto``: the default routing policy; blank pages are skipped) or
reads them in one fixed mode, and prints markdown, or one JSON object per file and line carrying
the model family detected from the checkpoint and its revision.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scriptorium.errors import InputRejected
from scriptorium.modes import Mode
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.progress import GrowingCount, count_progress
from scriptorium.settings import Settings
from worker.engine.base import PageFailed, PageInput, PageResult, PromptTask

if TYPE_CHECKING:
    from worker.engine.deepseek.engine import DeepSeekOcrEngine
    from worker.prepare.document import RenderedPage

PAGE_SPLIT = "\n\n<--- Page Split --->\n\n"  # how the reference joins pages of one document
AUTO_MODE = "auto"
EXIT_OK, EXIT_PAGE_FAILED, EXIT_UNUSABLE = 0, 1, 2


@dataclass(frozen=True)
class OcrRequest:
    paths: Sequence[Path]
    model: str
    mode: str = AUTO_MODE  # or a Mode value
    task: str = PromptTask.MARKDOWN.value
    pages: str | None = None
    json_output: bool = False
    device: str | None = None
    progress: bool = True  # drawn on stderr, only when it is a terminal


@dataclass(frozen=True)
class SkippedPage:
    """A page the router sends to no mode (blank): not read, as in the fleet."""

    page_no: int
    reason: str


Outcome = PageResult | PageFailed | SkippedPage
ModeChoice = tuple[Mode | None, str]


def run_ocr(request: OcrRequest, settings: Settings) -> int:
    """Read every file; returns the exit status (0 all read, 1 a file or page failed, 2 no model)."""
    engine_settings = settings.engine.model_copy(
        update={"model_path": request.model, **({"device": request.device} if request.device else {})}
    )
    from worker.engine.deepseek.checkpoint import CheckpointError
    from worker.engine.deepseek.engine import DeepSeekOcrEngine

    try:
        engine = DeepSeekOcrEngine(engine_settings)
    except (CheckpointError, ValueError) as error:
        print(f"scriptorium ocr: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    status = EXIT_OK
    with count_progress(request.progress) as progress:
        pages = GrowingCount(progress, "pages")
        for path in request.paths:
            pages.describe(path.name)
            try:
                outcomes, sizes = _read_file(engine, settings, path, request, pages)
            except InputRejected as rejection:
                pages.note(f"{path}: {rejection.reason}: {rejection.message}")
                status = EXIT_PAGE_FAILED
                continue
            for outcome in outcomes:
                if isinstance(outcome, PageFailed):
                    pages.note(f"{path}: {outcome}")
                    status = EXIT_PAGE_FAILED
            if request.json_output:
                print(json.dumps(_file_json(engine, path, outcomes, sizes), ensure_ascii=False), flush=True)
            else:
                print(
                    PAGE_SPLIT.join(
                        _markdown(outcome) for outcome in outcomes if not isinstance(outcome, PageFailed)
                    ),
                    flush=True,
                )
    return status


def _read_file(
    engine: DeepSeekOcrEngine,
    settings: Settings,
    path: Path,
    request: OcrRequest,
    pages: GrowingCount,
) -> tuple[list[Outcome], dict[int, tuple[int, int]]]:
    from worker.prepare.render import open_document

    choose = _mode_chooser(request.mode, settings, request.model)
    outcomes: list[Outcome] = []
    sizes: dict[int, tuple[int, int]] = {}
    with open_document(path, settings.prepare) as document:
        selected = resolve_page_selection(request.pages, document.info.page_count)
        pages.add(len(selected))
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
                            page_no=page.page_no, image=page.image, mode=mode, task=PromptTask(request.task)
                        )
                    )
            outcomes.extend(engine.run_outcomes(inputs))
            pages.advance(len(chunk))
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


def _file_json(
    engine: DeepSeekOcrEngine, path: Path, outcomes: Sequence[Outcome], sizes: dict[int, tuple[int, int]]
) -> dict[str, Any]:
    return {
        "path": str(path),
        "model": engine.model,
        "model_revision": engine.revision,
        "pages": [_page_json(outcome, sizes[outcome.page_no]) for outcome in outcomes],
    }


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
