"""Vision-token totals of routed pages against reading every page in base or in gundam."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scriptorium.modes import DEFAULT_MAX_CROPS, DEFAULT_MIN_CROPS, Mode, token_geometry
from worker.routing.decide import RoutingDecision


@dataclass(frozen=True)
class Forecast:
    pages: int
    skipped: int
    routed: int  # vision tokens of the routed modes (skipped pages cost nothing)
    always_base: int
    always_gundam: int

    @classmethod
    def of(
        cls,
        decisions: Iterable[RoutingDecision],
        *,
        min_crops: int = DEFAULT_MIN_CROPS,
        max_crops: int = DEFAULT_MAX_CROPS,
    ) -> Forecast:
        pages = skipped = routed = base = gundam = 0
        for decision in decisions:
            width, height = decision.facts.width, decision.facts.height
            pages += 1
            skipped += decision.skipped
            routed += decision.vision_tokens
            base += token_geometry(Mode.BASE, width, height).vision_features
            gundam += token_geometry(
                Mode.GUNDAM, width, height, min_crops=min_crops, max_crops=max_crops
            ).vision_features
        return cls(pages=pages, skipped=skipped, routed=routed, always_base=base, always_gundam=gundam)

    def share_of(self, baseline: int) -> float:
        return round(self.routed / baseline, 3) if baseline else 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {
            "pages": self.pages,
            "skipped": self.skipped,
            "routed_vision_tokens": self.routed,
            "always_base_vision_tokens": self.always_base,
            "always_gundam_vision_tokens": self.always_gundam,
            "share_of_base": self.share_of(self.always_base),
            "share_of_gundam": self.share_of(self.always_gundam),
        }
