"""Greedy generation for a batch of pages in one ``generate`` call.

Prompts are padded on the left so every row's generated ids start at the same column; the model
takes position ids from the attention mask, so a padded row computes what it would alone. Global
views of one mode share a size and are stacked; gundam tiles of all pages are concatenated with
their per-page counts and grids, which ``unlimited_ocr`` accepts for any mix of grids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from worker.engine.deepseek.ngram import WindowedNoRepeatNGram
from worker.engine.deepseek.preprocess import PreparedImage
from worker.engine.deepseek.special_tokens import BOS, EOS, PAD


@dataclass(frozen=True)
class RepetitionGuard:
    """The no-repeat n-gram settings; ``ngram_size`` 0 turns the guard off."""

    ngram_size: int
    window_size: int
    whitelist: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.ngram_size != 0 and (self.ngram_size < 2 or self.window_size < 1):
            raise ValueError(
                f"the no-repeat guard needs ngram_size >= 2 (or 0 to turn it off) and a positive window, "
                f"got {self.ngram_size} and {self.window_size}"
            )

    @property
    def enabled(self) -> bool:
        return self.ngram_size > 0


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: Sequence[int]
    image: PreparedImage
    max_new_tokens: int


@dataclass(frozen=True)
class GeneratedSequence:
    token_ids: tuple[int, ...]  # generated ids, EOS included when reached
    finished: bool  # EOS was generated within the page's limit
    guard_intervened: bool  # the no-repeat guard overrode a greedy choice


@dataclass(frozen=True)
class ModelInputs:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor
    pixel_values_local: torch.Tensor | None
    num_local_patches: list[int] | None
    patches_grid: list[list[int]] | None

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "pixel_values": self.pixel_values,
            "pixel_values_local": self.pixel_values_local,
            "num_local_patches": self.num_local_patches,
            "patches_grid": self.patches_grid,
        }


def build_inputs(
    requests: Sequence[GenerationRequest], *, device: torch.device, dtype: torch.dtype
) -> ModelInputs:
    """Left-padded ids, the mask, stacked global views and concatenated tiles for one batch."""
    width = max(len(request.prompt_ids) for request in requests)
    input_ids = torch.full((len(requests), width), PAD.id, dtype=torch.long)
    attention_mask = torch.zeros((len(requests), width), dtype=torch.long)
    for row, request in enumerate(requests):
        length = len(request.prompt_ids)
        input_ids[row, width - length :] = torch.tensor(list(request.prompt_ids), dtype=torch.long)
        attention_mask[row, width - length :] = 1
    sizes = {tuple(request.image.global_view.shape) for request in requests}
    if len(sizes) != 1:
        raise ValueError(f"one batch needs one global view size, got {sorted(sizes)}")
    pixel_values = torch.stack([request.image.global_view for request in requests])
    tile_counts = [int(request.image.tiles.shape[0]) for request in requests]
    tiled = sum(tile_counts) > 0
    grids = [list(request.image.geometry.grid or (0, 0)) for request in requests]
    return ModelInputs(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        pixel_values=pixel_values.to(device=device, dtype=dtype),
        pixel_values_local=(
            torch.cat([request.image.tiles for request in requests]).to(device=device, dtype=dtype)
            if tiled
            else None
        ),
        num_local_patches=tile_counts if tiled else None,
        patches_grid=grids if tiled else None,
    )


class _RowLimits:
    """Stops each row once it has generated its own number of new tokens."""

    def __init__(self, prompt_width: int, limits: Sequence[int]) -> None:
        self.prompt_width = prompt_width
        self.limits = torch.tensor(list(limits), dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if self.limits.device != input_ids.device:
            self.limits = self.limits.to(input_ids.device)
        done: torch.Tensor = input_ids.shape[1] - self.prompt_width >= self.limits
        return done


def generate_batch(
    model: Any,
    requests: Sequence[GenerationRequest],
    *,
    guard: RepetitionGuard,
    device: torch.device,
    dtype: torch.dtype,
    ignore_eos: bool = False,
) -> list[GeneratedSequence]:
    """Greedy decoding of every request; ``ignore_eos`` (benchmarks) runs each to its limit."""
    from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    if any(request.max_new_tokens <= 0 for request in requests):
        raise ValueError("every request needs room for at least one new token")
    window = reference_window(model)
    padded = len({len(request.prompt_ids) for request in requests}) > 1
    if window is not None and padded and max(request.max_new_tokens for request in requests) > window:
        raise ValueError(
            f"reference sliding-window attention cannot batch prompts of different lengths past its "
            f"{window}-token window (transformers misplaces the padding mask once the window slides)"
        )
    inputs = build_inputs(requests, device=device, dtype=dtype)
    prompt_width = inputs.input_ids.shape[1]
    limits = [request.max_new_tokens for request in requests]
    longest = max(limits)
    processors = []
    ngram_guard = None
    if guard.enabled:
        ngram_guard = WindowedNoRepeatNGram(
            ngram_size=guard.ngram_size,
            window_size=guard.window_size,
            whitelist=guard.whitelist,
            prompt_width=prompt_width,
            limits=limits,
            eos_id=EOS.id,
        )
        processors.append(ngram_guard)
    config = GenerationConfig(  # type: ignore[no-untyped-call]
        max_new_tokens=longest,
        min_new_tokens=longest if ignore_eos else None,
        do_sample=False,
        num_beams=1,
        bos_token_id=BOS.id,
        eos_token_id=EOS.id,
        pad_token_id=PAD.id,
    )
    with torch.inference_mode():
        sequences = model.generate(
            **inputs.as_kwargs(),
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([_RowLimits(prompt_width, limits)]),
        )
    generated = sequences[:, prompt_width:].tolist()
    intervened = ngram_guard.intervened.tolist() if ngram_guard is not None else [False] * len(requests)
    return [
        _cut(row, limit, guard_intervened=bool(flag))
        for row, limit, flag in zip(generated, limits, intervened, strict=True)
    ]


def reference_window(model: Any) -> int | None:
    """The reference sliding window the model's decoder attends with, None for full attention."""
    text_config: Any = getattr(model.config, "text_config", None)
    if "reference_sliding_attention" not in (getattr(text_config, "layer_types", None) or ()):
        return None
    window: int = text_config.sliding_window
    return window


def _cut(row: list[int], limit: int, *, guard_intervened: bool) -> GeneratedSequence:
    ids = row[:limit]
    if EOS.id in ids:
        end = ids.index(EOS.id) + 1
        return GeneratedSequence(token_ids=tuple(ids[:end]), finished=True, guard_intervened=guard_intervened)
    return GeneratedSequence(token_ids=tuple(ids), finished=False, guard_intervened=guard_intervened)
