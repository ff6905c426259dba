"""Turn DeepSeek-OCR's raw output into clean markdown, layout blocks and figure crops.

With the grounding prompt the model writes one header per layout element,
``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2], ...]<|/det|>``, followed by the element's content
up to the next header. Boxes are on a 0-999 grid over the original page. The markdown keeps the
contents, turns ``image`` elements into links to their crops, and drops every other marker, as
the reference ``run_dpsk_ocr_pdf.py`` does. Model output is never evaluated: boxes are read with
``json`` and a det that is not a list of four-number boxes contributes none.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from PIL import Image

from worker.engine.base import Block, Figure
from worker.engine.deepseek.special_tokens import DET_CLOSE, DET_OPEN, GROUNDING, REF_CLOSE, REF_OPEN

COORDINATE_SCALE = 999
FIGURE_LABEL = "image"

Box = tuple[int, int, int, int]

# The tokenizer's control tokens (BOS, EOS, pad, role tags) are written with full-width bars.
_CONTROL_TOKEN = re.compile(r"<｜[^｜<>\n]{1,40}｜>")
_DET_BODY = r"[\[\]\d\s,.+\-]*"  # what a det can hold when its closing tag never came
_REF, _REF_END = re.escape(REF_OPEN.text), re.escape(REF_CLOSE.text)
_DET, _DET_END = re.escape(DET_OPEN.text), re.escape(DET_CLOSE.text)
_HEADER = re.compile(
    rf"{_REF}(?P<label>[^<>\n]*)(?:{_REF_END}|(?=\s*{_DET}))"
    rf"(?:\s*{_DET}(?:(?P<det>(?:(?!<\|).)*?){_DET_END}|(?P<unclosed_det>{_DET_BODY})))?",
    re.DOTALL,
)
_STRAY_MARKER = re.compile(
    rf"{_DET}{_DET_BODY}(?:{_DET_END})?|{_REF}|{_REF_END}|{_DET_END}|{re.escape(GROUNDING.text)}"
)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n{3,}")
_LATEX_FIXES = (("\\coloneqq", ":="), ("\\eqqcolon", "=:"))

# A looping tail: the end of the text is one unit repeated at least this often, over this many
# characters, and the unit carries letters or digits outside markup (runs of empty table cells,
# dot leaders and rules are legitimate repetition).
_LOOP_MIN_REPEATS = 5
_LOOP_MIN_CHARS = 200
_LOOP_MAX_UNIT = 600
_MARKUP = re.compile(r"<[^<>]*>|^[^<>]*>|<[^<>]*$")


@dataclass(frozen=True)
class ParsedPage:
    """The readable result of one page: markdown, its grounded blocks and cropped figures."""

    markdown: str
    blocks: tuple[Block, ...]
    figures: tuple[Figure, ...]


def strip_special_tokens(raw: str) -> str:
    """``raw`` without the tokenizer's control tokens (EOS, BOS, pad); nothing else changes."""
    return _CONTROL_TOKEN.sub("", raw)


def parse_output(raw: str, *, page_no: int, image: Image.Image) -> ParsedPage:
    """Parse one page's raw output; ``image`` is the page the model read, at its original size."""
    text = strip_special_tokens(raw)
    page = image if image.mode == "RGB" else image.convert("RGB")
    headers = list(_HEADER.finditer(text))
    first = headers[0].start() if headers else len(text)
    pieces = [clean_text(text[:first])]
    blocks: list[Block] = []
    figures: list[Figure] = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        label = header.group("label").strip()
        det = header.group("det") if header.group("det") is not None else header.group("unclosed_det")
        boxes = tuple(to_page_box(box, page.width, page.height) for box in parse_det(det))
        content = clean_text(text[header.end() : end])
        if label == FIGURE_LABEL:
            for box in boxes:
                if box[0] < box[2] and box[1] < box[3]:
                    name = figure_name(page_no, len(figures))
                    figures.append(Figure(name=name, box=box, image=page.crop(box)))
                    pieces.append(f"![]({name})")
        blocks.append(Block(label=label, boxes=boxes, text=content))
        pieces.append(content)
    return ParsedPage(
        markdown="\n\n".join(piece for piece in pieces if piece),
        blocks=tuple(blocks),
        figures=tuple(figures),
    )


def figure_name(page_no: int, index: int) -> str:
    return f"figures/p{page_no:04d}_{index}.jpg"


def clean_text(segment: str) -> str:
    """A stretch of output as markdown: stray markers gone, LaTeX the renderers know, tidy spacing."""
    cleaned = _STRAY_MARKER.sub("", segment)
    for latex, plain in _LATEX_FIXES:
        cleaned = cleaned.replace(latex, plain)
    cleaned = _TRAILING_SPACE.sub("", cleaned)
    return _BLANK_RUN.sub("\n\n", cleaned).strip()


def parse_det(det: str | None) -> list[tuple[float, float, float, float]]:
    """The boxes of a det: ``[[x1, y1, x2, y2], ...]`` (or one bare box); none if malformed."""
    if not det or not det.strip():
        return []
    try:
        value = json.loads(det, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return []
    if _is_box(value):
        return [_as_box(value)]
    if isinstance(value, list) and value and all(_is_box(item) for item in value):
        return [_as_box(item) for item in value]
    return []


def to_page_box(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    """A 0-999 grid box in page pixels (``int(v / 999 * size)`` like the reference), clamped, ordered."""
    xs = _to_pixels(box[0], width), _to_pixels(box[2], width)
    ys = _to_pixels(box[1], height), _to_pixels(box[3], height)
    return min(xs), min(ys), max(xs), max(ys)


def looks_repetitive(text: str) -> bool:
    """Whether ``text`` ends in a loop: one unit of up to 600 characters repeated over and over."""
    tail = strip_special_tokens(text).rstrip()
    for unit in range(1, _LOOP_MAX_UNIT + 1):
        span = max(unit * _LOOP_MIN_REPEATS, _LOOP_MIN_CHARS)
        if span > len(tail):
            return False
        window = tail[-span:]
        if window[unit:] == window[:-unit] and _has_words(window):
            return True
    return False


def _has_words(window: str) -> bool:
    return any(char.isalnum() for char in _MARKUP.sub("", window))


def _to_pixels(coordinate: float, size: int) -> int:
    bounded = min(max(coordinate, 0), COORDINATE_SCALE)
    return int(bounded / COORDINATE_SCALE * size)


def _is_box(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(
            isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number)
            for number in value
        )
    )


def _as_box(value: list[float]) -> tuple[float, float, float, float]:
    return value[0], value[1], value[2], value[3]


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a coordinate")
