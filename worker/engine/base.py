"""The contract between the fleet and an OCR engine.

A batch of page images goes in, each with the mode and task to read it with; one result per
page comes out, carrying the markdown, the layout blocks, figure crops and the exact token
accounting of what the engine actually fed and produced. The pipeline never looks inside an
engine, and an engine never touches the database, the queue or object storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from PIL import Image

from scriptorium.modes import Mode


class PromptTask(StrEnum):
    """What the model is asked to do with a page."""

    MARKDOWN = "markdown"  # markdown with layout (grounding boxes)
    FREE_OCR = "free_ocr"  # plain text, no layout
    FIGURE = "figure"  # deep parsing of a chart or figure
    LOCATE = "locate"  # find a referred phrase; needs PageInput.query


@dataclass(frozen=True)
class PageInput:
    page_no: int
    image: Image.Image  # RGB, the page as rasterised; its size is the page's pixel size
    mode: Mode
    task: PromptTask = PromptTask.MARKDOWN
    query: str | None = None  # the phrase for PromptTask.LOCATE
    # What the engine's ``preprocess`` built for this page ahead of ``run``; opaque to everyone else.
    prepared: object | None = None


@dataclass(frozen=True)
class TokenCounts:
    vision: int  # encoder features (the paper's vision tokens)
    placeholders: int  # <image> ids in the prompt
    valid: int  # paper Eq. 1: features minus padding
    prompt: int  # every prompt id, BOS and placeholders included
    output: int  # generated ids, EOS included when reached


@dataclass(frozen=True)
class Block:
    """One grounded region: label, boxes in page pixels (x1, y1, x2, y2), and its text."""

    label: str
    boxes: tuple[tuple[int, int, int, int], ...]
    text: str


@dataclass(frozen=True)
class Figure:
    """An image region cropped from the page; ``name`` is how the markdown links it."""

    name: str
    box: tuple[int, int, int, int]
    image: Image.Image


@dataclass(frozen=True)
class PageResult:
    page_no: int
    mode: Mode
    grid: tuple[int, int] | None  # (columns, rows) of gundam tiles
    tokens: TokenCounts
    finished: bool  # generation reached EOS
    repetition: bool  # the no-repeat guard had to intervene, or the output loops
    markdown: str
    raw_output: str
    blocks: tuple[Block, ...] = ()
    figures: tuple[Figure, ...] = field(default=())
    engine_seconds: float = 0.0
    model_revision: str = ""
    model: str = ""  # the model family (scriptorium.model_families.ModelFamily value)


@runtime_checkable
class Engine(Protocol):
    """What every engine provides; the GPU worker holds exactly one, resident."""

    @property
    def revision(self) -> str:
        """Identifies the weights and config; recorded with every result."""
        ...

    @property
    def model(self) -> str:
        """The model family served (``deepseek-ocr``, ``unlimited-ocr``); recorded with every result."""
        ...

    def warmup(self) -> None:
        """Run one synthetic page so the first real page pays no start-up cost."""
        ...

    def preprocess(self, page: PageInput) -> PageInput:
        """The CPU-side work of reading ``page`` (resizing, tiling, tensors, prompt ids), done
        ahead of ``run`` on another thread while the device reads the previous batch.

        Thread-safe and never raises: a page it cannot prepare comes back unchanged, and ``run``
        reports the failure as usual. ``run`` accepts pages prepared this way or not.
        """
        ...

    def run(self, pages: Sequence[PageInput]) -> list[PageResult]:
        """Read the pages, returning results in the same order.

        A page that cannot be read raises :class:`PageFailed`; a fault that leaves the engine
        unusable (a poisoned CUDA context) raises :class:`EngineFatal` and the process exits.
        """
        ...


class PageFailed(Exception):
    """One page could not be read; the rest of the batch is unaffected."""

    def __init__(self, page_no: int, message: str) -> None:
        super().__init__(f"page {page_no}: {message}")
        self.page_no = page_no
        self.message = message


class BatchPageFailures(PageFailed):
    """Some pages of a batch failed; ``outcomes`` holds every page's result or failure, in order."""

    def __init__(self, outcomes: list[PageResult | PageFailed]) -> None:
        failures = [outcome for outcome in outcomes if isinstance(outcome, PageFailed)]
        first = failures[0]
        super().__init__(first.page_no, f"{first.message} ({len(failures)} of {len(outcomes)} pages failed)")
        self.outcomes = outcomes


class EngineFatal(Exception):
    """The engine can no longer serve; the worker process must be replaced."""
