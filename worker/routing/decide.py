"""Choosing a page's mode from its facts and the policy, with a one-line reason.

The engine reads pixels, so the ink is the final word on how much text a page holds. A text
layer is the more precise count when it agrees with the ink; when the two disagree by more
than :data:`DISAGREEMENT_FACTOR` the layer is lying (an invisible OCR layer of another scan, a
garbage layer, text drawn as curves, words inside pictures) and the ink is used instead.

The compression ratio is measured against the *valid* vision tokens of the mode for this page
(the paper's Eq. 1: the grey padding of a fitted view carries nothing), and the prediction
gets headroom for what the estimate cannot see: markup the model writes around the text, and
the spread of the ink estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PIL import Image

from scriptorium.modes import (
    DEFAULT_MAX_CROPS,
    DEFAULT_MIN_CROPS,
    MODE_ORDER,
    Mode,
    TokenGeometry,
    token_geometry,
)
from scriptorium.policy import RoutingPolicy
from worker.routing.facts import PageFacts, measure_page
from worker.routing.tokens import TokenCounter

DISAGREEMENT_FACTOR = 2.5
MIN_DISAGREEMENT_TOKENS = 50  # small pages disagree by large factors over a handful of tokens
# Headroom on the predicted tokens. Text layer: headings, tables and formulas come out as markdown,
# HTML and LaTeX. Pixels: the 75th percentile of the ink estimate's error on corpus/pdf-real.
TEXT_LAYER_HEADROOM = 1.15
PIXEL_HEADROOM = 1.25


class Source(StrEnum):
    TEXT_LAYER = "text_layer"
    PIXELS = "pixels"


@dataclass(frozen=True)
class TextEstimate:
    tokens: int
    source: Source
    headroom: float
    note: str  # why this source, for the reason line


@dataclass(frozen=True)
class RoutingDecision:
    mode: Mode | None  # None: skipped, no GPU work
    predicted_text_tokens: int
    source: Source
    reason: str
    facts: PageFacts
    geometry: TokenGeometry | None = None  # of the chosen mode on this page

    @property
    def skipped(self) -> bool:
        return self.mode is None

    @property
    def vision_tokens(self) -> int:
        return 0 if self.geometry is None else self.geometry.vision_features

    @property
    def placeholders(self) -> int:
        return 0 if self.geometry is None else self.geometry.placeholders

    @property
    def valid_tokens(self) -> int:
        return 0 if self.geometry is None else self.geometry.valid

    @property
    def predicted_ratio(self) -> float | None:
        """Predicted text tokens per valid vision token, without headroom."""
        if self.geometry is None:
            return None
        return round(self.predicted_text_tokens / self.geometry.valid, 2)

    def as_dict(self) -> dict[str, Any]:
        """The page row's ``routing`` JSON: the decision and the facts behind it."""
        return {
            "mode": None if self.mode is None else self.mode.value,
            "skipped": self.skipped,
            "predicted_text_tokens": self.predicted_text_tokens,
            "vision_tokens": self.vision_tokens,
            "valid_tokens": self.valid_tokens,
            "placeholders": self.placeholders,
            "grid": None if self.geometry is None or self.geometry.grid is None else list(self.geometry.grid),
            "predicted_ratio": self.predicted_ratio,
            "source": self.source.value,
            "reason": self.reason,
            "facts": self.facts.as_dict(),
        }


def route_page(
    image: Image.Image,
    text_layer: str | None,
    policy: RoutingPolicy,
    *,
    counter: TokenCounter | None = None,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> RoutingDecision:
    """Measure a page and decide its mode in one call."""
    facts = measure_page(image, text_layer, counter=counter)
    return decide(facts, policy, min_crops=min_crops, max_crops=max_crops)


def decide(
    facts: PageFacts,
    policy: RoutingPolicy,
    *,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> RoutingDecision:
    if facts.blank:
        return RoutingDecision(
            mode=None,
            predicted_text_tokens=0,
            source=Source.PIXELS,
            reason="blank page (no text-like ink, no text layer): skipped",
            facts=facts,
        )
    estimate = estimate_text(facts)

    def geometry(mode: Mode) -> TokenGeometry:
        return token_geometry(mode, facts.width, facts.height, min_crops=min_crops, max_crops=max_crops)

    planned = estimate.tokens * estimate.headroom
    fixed = policy.fixed_mode
    if fixed is not None:
        chosen = geometry(fixed)
        why = f"fixed mode {fixed} requested"
    else:
        chosen = _cheapest_within(planned, policy.target_ratio, [geometry(m) for m in policy.allowed_modes()])
        unbounded = _cheapest_within(planned, policy.target_ratio, [geometry(m) for m in MODE_ORDER])
        why = _auto_reason(chosen, unbounded, planned, policy)
    if facts.near_blank:
        why = f"near-blank page; {why}"
    ratio = planned / chosen.valid
    reason = (
        f"≈{estimate.tokens:,} text tokens from {estimate.note}; {why}: "
        f"{ratio:.1f}× on {chosen.valid} valid of {chosen.vision_features} vision tokens"
    )
    return RoutingDecision(
        mode=chosen.mode,
        predicted_text_tokens=estimate.tokens,
        source=estimate.source,
        reason=reason,
        facts=facts,
        geometry=chosen,
    )


def estimate_text(facts: PageFacts) -> TextEstimate:
    """The text-token count the decision uses, and where it comes from."""
    ink = facts.pixel_tokens
    layer = facts.text_layer
    if layer is None:
        return TextEstimate(ink, Source.PIXELS, PIXEL_HEADROOM, "the ink (no text layer)")
    if not layer.usable:
        state = "empty" if layer.chars == 0 else "garbled"
        return TextEstimate(ink, Source.PIXELS, PIXEL_HEADROOM, f"the ink (text layer {state})")
    text = layer.tokens
    gap = abs(ink - text) >= MIN_DISAGREEMENT_TOKENS
    if gap and ink > DISAGREEMENT_FACTOR * text:
        note = f"the ink; the text layer holds only ≈{text:,} (a scan, or text inside images)"
        return TextEstimate(ink, Source.PIXELS, PIXEL_HEADROOM, note)
    if gap and text > DISAGREEMENT_FACTOR * ink:
        note = f"the ink; the text layer claims ≈{text:,} the page does not show (hidden or off-page text)"
        return TextEstimate(ink, Source.PIXELS, PIXEL_HEADROOM, note)
    note = f"the text layer (ink agrees: ≈{ink:,})"
    return TextEstimate(text, Source.TEXT_LAYER, TEXT_LAYER_HEADROOM, note)


def _cheapest_within(planned: float, target: float, candidates: list[TokenGeometry]) -> TokenGeometry:
    """The first candidate (cheapest first) within the target ratio, else the one holding most."""
    for candidate in candidates:
        if planned <= target * candidate.valid:
            return candidate
    return max(candidates, key=lambda candidate: (candidate.valid, -candidate.vision_features))


def _auto_reason(
    chosen: TokenGeometry, unbounded: TokenGeometry, planned: float, policy: RoutingPolicy
) -> str:
    target = f"≤{policy.target_ratio:g}×"
    if chosen.mode is unbounded.mode:
        if planned > policy.target_ratio * chosen.valid:
            return f"no mode reads it at {target}, {chosen.mode} holds the most"
        return f"{chosen.mode} is the cheapest mode at {target}"
    if chosen.mode.rank > unbounded.mode.rank:
        return f"{unbounded.mode} would do at {target}, raised to min_mode {chosen.mode}"
    if planned > policy.target_ratio * chosen.valid:
        return f"needs {unbounded.mode} at {target}, capped at max_mode {chosen.mode}"
    return f"{chosen.mode} is the cheapest allowed mode at {target}"
