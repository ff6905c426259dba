"""The facts measured on each page before routing: size, ink, text layer, blankness.

Facts are cheap (a few ms on one core for a 144-dpi page), policy-free and stored with the
page, so a decision can always be explained, and re-made under another policy, from them.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from worker.routing.ink import InkProfile, measure_ink
from worker.routing.tokens import CalibratedRateCounter, ScriptMix, TokenCounter

# A page is blank when its ink reads as fewer tokens than this, covers less than this share of
# the page, and it has no text layer: scanner noise, specks, an empty yellowed leaf.
BLANK_MAX_TOKENS = 2
BLANK_MAX_INK = 0.002
# Near-blank: a page number, a stray heading. Still read, in the cheapest mode.
NEAR_BLANK_MAX_TOKENS = 8
# A text layer whose characters are this broken (replacement, private-use, control) is ignored.
MAX_GARBLED_SHARE = 0.3


@dataclass(frozen=True)
class TextLayerFacts:
    chars: int  # non-whitespace characters
    cjk_share: float
    latin_share: float  # Latin letters and digits
    other_share: float  # letters of other scripts
    garbled_share: float  # replacement, private-use and control characters
    tokens: int  # estimated DeepSeek text tokens
    counter: str  # which counter estimated them: "rates" or "tokenizer"

    @property
    def usable(self) -> bool:
        return self.chars > 0 and self.garbled_share < MAX_GARBLED_SHARE


@dataclass(frozen=True)
class PageFacts:
    width: int  # pixels, as fed to the engine
    height: int
    ink: InkProfile
    text_layer: TextLayerFacts | None  # None: the input has no text layer (an image, a scan)

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def pixel_tokens(self) -> int:
        return self.ink.estimated_tokens

    @property
    def layer_tokens(self) -> int | None:
        """Tokens of a usable text layer, None without one."""
        layer = self.text_layer
        return layer.tokens if layer is not None and layer.usable else None

    @property
    def blank(self) -> bool:
        return (
            (self.text_layer is None or self.text_layer.chars == 0)
            and self.pixel_tokens < BLANK_MAX_TOKENS
            and self.ink.ink_ratio < BLANK_MAX_INK
        )

    @property
    def near_blank(self) -> bool:
        return (
            not self.blank
            and self.pixel_tokens <= NEAR_BLANK_MAX_TOKENS
            and (self.layer_tokens or 0) <= (NEAR_BLANK_MAX_TOKENS)
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for the page row."""
        return {
            "width": self.width,
            "height": self.height,
            "aspect": round(self.aspect, 4),
            "ink": asdict(self.ink),
            "pixel_tokens": self.pixel_tokens,
            "text_layer": None if self.text_layer is None else asdict(self.text_layer),
            "blank": self.blank,
            "near_blank": self.near_blank,
        }


def measure_page(
    image: Image.Image, text_layer: str | None, *, counter: TokenCounter | None = None
) -> PageFacts:
    """Measure one page; ``text_layer`` is the PDF's text (``""`` when empty, None for images)."""
    width, height = image.size
    return PageFacts(
        width=width,
        height=height,
        ink=measure_ink(image),
        text_layer=None if text_layer is None else measure_text_layer(text_layer, counter),
    )


def measure_text_layer(text: str, counter: TokenCounter | None = None) -> TextLayerFacts:
    mix = ScriptMix.of(text)
    if counter is None:
        rates = CalibratedRateCounter()
        tokens, name = rates.count_mix(mix), rates.name
    else:
        tokens, name = counter.count(text), counter.name
    return TextLayerFacts(
        chars=mix.chars,
        cjk_share=mix.share(mix.cjk),
        latin_share=mix.share(mix.latin),
        other_share=mix.share(mix.other),
        garbled_share=mix.share(_garbled(text)),
        tokens=tokens,
        counter=name,
    )


def _garbled(text: str) -> int:
    return sum(
        n
        for char, n in Counter(text).items()
        if char == "\ufffd" or (unicodedata.category(char) in ("Co", "Cn", "Cc") and not char.isspace())
    )
