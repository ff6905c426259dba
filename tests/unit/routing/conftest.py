"""Synthetic pages drawn with PIL's built-in font, and engine results in the real result shape."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from PIL import Image, ImageDraw, ImageFont

from scriptorium.modes import Mode, token_geometry
from worker.engine.base import Block, PageResult, TokenCounts

LETTER = (1224, 1584)  # US letter at 144 dpi
VOCABULARY = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but "
    "have an they you were their one all we can her has there been if more when will would who so no "
    "routing page vision token mode document archive scanned layer model decoder precision compression"
)
WORDS = tuple(VOCABULARY.split())

PageMaker = Callable[..., Image.Image]


def prose(seed: int, words: int) -> str:
    chooser = random.Random(seed)
    return " ".join(chooser.choice(WORDS) for _ in range(words))


def draw_text_page(
    text: str,
    *,
    size: tuple[int, int] = LETTER,
    font_size: int = 20,
    margin: int = 90,
    background: tuple[int, int, int] = (255, 255, 255),
    ink: tuple[int, int, int] = (20, 20, 20),
) -> Image.Image:
    """Wrap ``text`` into lines across the page, top to bottom, until it or the page runs out."""
    page = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=font_size)
    width, height = size
    line_pitch = round(font_size * 1.4)
    y = margin
    line: list[str] = []
    for word in text.split():
        candidate = " ".join([*line, word])
        if draw.textlength(candidate, font=font) > width - 2 * margin and line:
            draw.text((margin, y), " ".join(line), font=font, fill=ink)
            y += line_pitch
            line = [word]
            if y > height - margin - line_pitch:
                return page
        else:
            line.append(word)
    if line:
        draw.text((margin, y), " ".join(line), font=font, fill=ink)
    return page


@pytest.fixture
def text_page() -> PageMaker:
    return draw_text_page


@pytest.fixture
def blank_page() -> Image.Image:
    return Image.new("RGB", LETTER, (255, 255, 255))


def engine_result(
    mode: Mode,
    *,
    output: int,
    finished: bool = True,
    repetition: bool = False,
    size: tuple[int, int] = LETTER,
    blocks: tuple[Block, ...] = (),
) -> PageResult:
    """A result as the engine reports it, with the exact token geometry of ``mode`` on ``size``."""
    geometry = token_geometry(mode, *size)
    return PageResult(
        page_no=1,
        mode=mode,
        grid=geometry.grid,
        tokens=TokenCounts(
            vision=geometry.vision_features,
            placeholders=geometry.placeholders,
            valid=geometry.valid,
            prompt=geometry.placeholders + 12,
            output=output,
        ),
        finished=finished,
        repetition=repetition,
        markdown="text",
        raw_output="text",
        blocks=blocks,
    )
