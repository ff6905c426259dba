"""How a page's resolution mode is chosen: the routing policy a request or a tenant sets.

``auto`` picks, per page, the cheapest mode whose vision tokens keep the predicted
text-to-vision compression ratio at or under ``target_ratio`` (the paper reports ≈97% decoding
precision up to 10×), within ``min_mode``..``max_mode``. A fixed mode reads every page in that
mode and never escalates. After OCR, a page whose output never reached EOS, repeats, or whose
output tokens exceed ``escalation_ratio`` times its vision tokens is read again one mode up, at
most ``max_escalations`` times.

Stored as JSON on the tenant (its default) and on each document (the resolved policy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scriptorium.modes import MODE_ORDER, Mode

AUTO: Literal["auto"] = "auto"


class RoutingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["auto"] | Mode = Field(default=AUTO, description='"auto" or a fixed mode')
    target_ratio: float = Field(
        default=10.0, gt=0, le=50, description="most predicted text tokens per vision token when routing"
    )
    min_mode: Mode | None = Field(default=None, description="cheapest mode auto may choose")
    max_mode: Mode | None = Field(default=None, description="most expensive mode auto or escalation may use")
    max_escalations: int = Field(default=2, ge=0, le=len(MODE_ORDER) - 1, description="re-reads one mode up")
    escalation_ratio: float = Field(
        default=12.0, gt=0, le=100, description="output text tokens per vision token that count as under-read"
    )

    @model_validator(mode="after")
    def _bounds_are_consistent(self) -> RoutingPolicy:
        if self.lowest.rank > self.highest.rank:
            raise ValueError(f"min_mode {self.min_mode} is above max_mode {self.max_mode}")
        if isinstance(self.mode, Mode) and not self.lowest.rank <= self.mode.rank <= self.highest.rank:
            raise ValueError(f"fixed mode {self.mode} lies outside min_mode..max_mode")
        return self

    @property
    def fixed_mode(self) -> Mode | None:
        return self.mode if isinstance(self.mode, Mode) else None

    @property
    def lowest(self) -> Mode:
        return self.min_mode or MODE_ORDER[0]

    @property
    def highest(self) -> Mode:
        return self.max_mode or MODE_ORDER[-1]

    def allowed_modes(self) -> tuple[Mode, ...]:
        """The modes a page may be read in, cheapest first: one for a fixed mode."""
        if self.fixed_mode is not None:
            return (self.fixed_mode,)
        return MODE_ORDER[self.lowest.rank : self.highest.rank + 1]

    def escalation_ceiling(self) -> Mode:
        """The most expensive mode an escalation may reach."""
        return self.fixed_mode or self.highest

    def overlay(self, changes: dict[str, object]) -> RoutingPolicy:
        """This policy with ``changes`` applied (a request over a tenant default), validated again."""
        return RoutingPolicy.model_validate({**self.model_dump(exclude_unset=True), **changes})

    def to_json(self) -> str:
        return self.model_dump_json(exclude_defaults=True)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> RoutingPolicy:
        """Parse stored JSON; ``None`` or an empty string is the default policy."""
        if raw is None or not raw.strip():
            return cls()
        return cls.model_validate_json(raw)
