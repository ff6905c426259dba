"""How much text a page image holds, estimated from its pixels alone (numpy + PIL, a few ms).

The estimator measures text *length in line heights*. Ink is every pixel clearly darker than
its local paper (so yellowed scans and coloured slide backgrounds work); long thin runs are
table and form rules and are removed. The page is cut into vertical strips so that columns do
not blur each other; in each strip the rows holding ink form line bands, and a band's inked
width divided by its height is the length of that line in line heights ("em"). Summed over the
page this is resolution-independent, and it converts to tokens at a nearly fixed rate per
script: a Latin character is about half a line height wide and costs about a quarter of a
token, a CJK character is one line height wide and costs 0.6–1 token.

CJK and Hangul lines are told apart from Latin ones by where their ink sits: Latin ink crowds
into the x-height band in the middle of the line, square glyphs spread over the whole line.
A page whose lines run vertically (a rotated scan, Japanese tategaki) is measured on the
transposed image when the horizontal reading explains too little of its ink.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageChops

# Work on at most this many pixels: a 144-dpi broadsheet is read at half resolution.
MAX_WORK_PIXELS = 4_500_000
# Local background: brightest block mean among the 3×3 neighbouring blocks of this size.
BACKGROUND_BLOCK = 16
# A pixel is ink when it is darker than its background by this much (grey levels, or share).
MIN_CONTRAST = 40
CONTRAST_SHARE = 0.2
# Pixels merged along the line direction before finding bands (speed; word gaps stay visible).
CELL = 4
STRIPS = 8
# Runs of fully inked cells at least this share of the page are rules, not glyphs.
HORIZONTAL_RULE_SHARE = 1 / 12
VERTICAL_RULE_SHARE = 1 / 20
MIN_RULE_CELLS = 6
MIN_VERTICAL_RULE_ROWS = 20
# Band heights, relative to the page's typical line height, that can be text.
MIN_LINE_HEIGHT = 0.4
MAX_SINGLE_LINE = 1.6
MAX_TEXT_BAND = 4.0
# Below this share of ink inside line bands, or when the typical "line" is taller than this share
# of the page (vertical lines read across merge into page-tall bands), also try the page rotated.
ORIENTATION_CHECK_COVERAGE = 0.5
MAX_LINE_SHARE_OF_PAGE = 1 / 12
# Share of a line's ink in its middle half: ≥ LATIN_CENTRAL looks Latin, ≤ CJK_CENTRAL looks CJK.
LATIN_CENTRAL = 0.70
CJK_CENTRAL = 0.60
MIN_PROFILE_ROWS = 6
# Tokens per line height of text, fitted on corpus/pdf-real born-digital pages (text layer vs ink).
LATIN_TOKENS_PER_EM = 0.47
CJK_TOKENS_PER_EM = 1.0

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class InkProfile:
    ink_ratio: float  # share of page pixels that are ink
    text_lines: int  # most text lines in one vertical strip: lines per column
    line_height_px: float  # typical text-line height, in page pixels
    text_length_em: float  # total text length in line heights
    cjk_share: float  # 0 (Latin-like lines) … 1 (square CJK/Hangul glyphs)
    vertical: bool  # lines run top to bottom
    coverage: float  # share of the ink inside text-line bands

    @property
    def estimated_tokens(self) -> int:
        rate = LATIN_TOKENS_PER_EM * (1 - self.cjk_share) + CJK_TOKENS_PER_EM * self.cjk_share
        return round(self.text_length_em * rate)


@dataclass(frozen=True)
class _Reading:
    """The line analysis of one orientation, in working-image units."""

    length_em: float
    lines: int
    line_height: float
    central: float
    coverage: float
    plausible: bool  # the typical line is a small part of the page, as real text lines are

    @classmethod
    def empty(cls) -> _Reading:
        return cls(length_em=0.0, lines=0, line_height=0.0, central=0.0, coverage=0.0, plausible=False)


def measure_ink(image: Image.Image) -> InkProfile:
    grey, scale = _working_grey(image)
    ink = _ink_image(grey)
    along_rows = np.asarray(ink.reduce((CELL, 1)))
    ink_ratio = float(along_rows.mean()) / 255
    reading = _read_lines(along_rows)
    vertical = False
    if ink_ratio > 0 and (not reading.plausible or reading.coverage < ORIENTATION_CHECK_COVERAGE):
        rotated = _read_lines(np.ascontiguousarray(np.asarray(ink.reduce((1, CELL))).T))
        if rotated.plausible and (not reading.plausible or rotated.coverage > reading.coverage):
            reading, vertical = rotated, True
    return InkProfile(
        ink_ratio=round(ink_ratio, 5),
        text_lines=reading.lines,
        line_height_px=round(reading.line_height * scale, 1),
        text_length_em=round(reading.length_em, 1),
        cjk_share=round(_cjk_share(reading.central), 3),
        vertical=vertical,
        coverage=round(reading.coverage, 3),
    )


def _working_grey(image: Image.Image) -> tuple[Image.Image, int]:
    grey = image.convert("L")
    width, height = grey.size
    factor = 1
    while (width // factor) * (height // factor) > MAX_WORK_PIXELS:
        factor += 1
    return (grey.reduce(factor) if factor > 1 else grey), factor


def _ink_image(grey: Image.Image) -> Image.Image:
    """255 where a pixel is ink, 0 elsewhere."""
    blocks = np.asarray(grey.reduce(BACKGROUND_BLOCK), dtype=np.int16)
    padded = np.pad(blocks, 1, mode="edge")
    rows, cols = blocks.shape
    background = blocks.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(background, padded[dy : dy + rows, dx : dx + cols], out=background)
    contrast = np.maximum(MIN_CONTRAST, (background * CONTRAST_SHARE).astype(np.int16))
    threshold = np.clip(background - contrast, 0, 255).astype(np.uint8)
    low, high = int(threshold.min()), int(threshold.max())
    if high - low <= 8:  # even paper: one global threshold is exact enough and faster
        return grey.point([255 if level < low else 0 for level in range(256)])
    local = Image.fromarray(threshold).resize(grey.size, Image.Resampling.NEAREST)
    return ImageChops.subtract(local, grey).point([0] + [255] * 255)


def _read_lines(cells: npt.NDArray[np.uint8]) -> _Reading:
    """Analyse lines running along axis 1 of ``cells`` (means of CELL ink pixels, 0..255)."""
    mask = cells > 0
    if not mask.any():
        return _Reading.empty()
    mask &= ~_rules(cells == 255, mask)
    total_ink = int(np.count_nonzero(mask))
    if total_ink == 0:
        return _Reading.empty()
    rows = mask.shape[0]
    bands = _bands(mask)
    heights, widths, inked = bands.height, bands.width, bands.ink
    usable = (heights >= 3) & (widths >= 2 * CELL)
    if not usable.any():
        return _Reading.empty()
    line_height = _weighted_median(heights[usable], widths[usable])
    text = usable & (heights >= MIN_LINE_HEIGHT * line_height) & (heights <= MAX_TEXT_BAND * line_height)
    single = text & (heights <= MAX_SINGLE_LINE * line_height)
    merged = text & ~single
    length = float((widths[single] / heights[single]).sum())
    length += float((widths[merged] * heights[merged]).sum()) / line_height**2
    body = single & (heights >= max(MIN_PROFILE_ROWS, 0.6 * line_height))
    body_ink = float(inked[body].sum())
    lines_per_band = np.where(single, 1.0, np.where(merged, heights / line_height, 0.0))
    return _Reading(
        length_em=length,
        lines=round(float(np.bincount(bands.strip, weights=lines_per_band).max())),
        line_height=line_height,
        central=float(bands.middle[body].sum()) / body_ink if body_ink else 0.0,
        coverage=float(inked[text].sum()) / total_ink,
        plausible=line_height <= rows * MAX_LINE_SHARE_OF_PAGE,
    )


def _rules(full: BoolArray, mask: BoolArray) -> BoolArray:
    """Cells on long straight strokes: table borders, form lines, underlines, frames."""
    rows, cols = mask.shape
    horizontal = _in_long_runs(full, max(MIN_RULE_CELLS, round(cols * HORIZONTAL_RULE_SHARE)))
    vertical = _in_long_runs(
        np.ascontiguousarray(mask.T), max(MIN_VERTICAL_RULE_ROWS, round(rows * VERTICAL_RULE_SHARE))
    ).T
    return horizontal | vertical


def _in_long_runs(cells: BoolArray, length: int) -> BoolArray:
    """True where a cell belongs to a run of at least ``length`` True cells along axis 1."""
    rows, cols = cells.shape
    if length > cols:
        return np.zeros_like(cells)
    prefix = np.zeros((rows, cols + 1), dtype=np.int32)
    np.cumsum(cells, axis=1, out=prefix[:, 1:])
    window_full = (prefix[:, length:] - prefix[:, :-length]) == length
    if not window_full.any():
        return np.zeros_like(cells)
    starts = np.zeros((rows, cols - length + 2), dtype=np.int32)
    np.cumsum(window_full, axis=1, out=starts[:, 1:])
    position = np.arange(cols)
    last_start = np.minimum(position, cols - length) + 1
    first_start = np.maximum(0, position - length + 1)
    return (starts[:, last_start] - starts[:, first_start]) > 0


@dataclass(frozen=True)
class _Bands:
    """One entry per line band of every strip."""

    height: FloatArray  # rows
    width: FloatArray  # inked length along the line, pixels
    middle: FloatArray  # ink in the middle half of the band's rows
    ink: FloatArray  # all ink of the band
    strip: IntArray  # which strip


def _bands(mask: BoolArray) -> _Bands:
    rows, cols = mask.shape
    cells = mask.view(np.uint8)
    strip = -(-cols // STRIPS)
    strip_starts = np.arange(0, cols, strip)
    profiles = np.add.reduceat(cells, strip_starts, axis=1, dtype=np.int64)
    heights: list[IntArray] = []
    widths: list[IntArray] = []
    middles: list[IntArray] = []
    totals: list[IntArray] = []
    strips: list[IntArray] = []
    for index, start in enumerate(strip_starts):
        profile = profiles[:, index]
        edges = np.diff((profile > 0).view(np.int8), prepend=0, append=0)
        tops = np.flatnonzero(edges == 1)
        bottoms = np.flatnonzero(edges == -1)
        if tops.size == 0:
            continue
        bounds = np.empty(2 * tops.size, dtype=np.intp)
        bounds[0::2] = tops
        bounds[1::2] = bottoms
        if bounds[-1] >= rows:
            bounds = bounds[:-1]
        band_columns = np.add.reduceat(cells[:, start : start + strip], bounds, axis=0)[0::2]
        height = bottoms - tops
        quarter = height // 4
        cumulative = np.concatenate(([0], np.cumsum(profile)))
        heights.append(height)
        widths.append(np.count_nonzero(band_columns, axis=1) * CELL)
        middles.append(cumulative[bottoms - quarter] - cumulative[tops + quarter])
        totals.append(cumulative[bottoms] - cumulative[tops])
        strips.append(np.full(tops.size, index, dtype=np.int64))
    if not heights:
        empty = np.zeros(0)
        return _Bands(empty, empty, empty, empty, np.zeros(0, dtype=np.int64))
    return _Bands(
        height=np.concatenate(heights).astype(np.float64),
        width=np.concatenate(widths).astype(np.float64),
        middle=np.concatenate(middles).astype(np.float64),
        ink=np.concatenate(totals).astype(np.float64),
        strip=np.concatenate(strips),
    )


def _weighted_median(values: FloatArray, weights: FloatArray) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _cjk_share(central: float) -> float:
    if central <= 0:
        return 0.0
    return float(np.clip((LATIN_CENTRAL - central) / (LATIN_CENTRAL - CJK_CENTRAL), 0.0, 1.0))
