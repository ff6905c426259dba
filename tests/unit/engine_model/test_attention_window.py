"""The served decoder attends exactly as the family's profile says.

DeepSeek-OCR: full causal attention over prompt and output. Unlimited-OCR: reference
sliding-window attention, every position sees the whole prompt (image and text) and the last
``attention_window`` generated positions, itself included. The served model generates with its
own cache; the expectation is the same weights run once over the whole sequence with the
attention mask written out here from the profile. A served window one token wider or narrower
than the profile's, or full attention where a window is published, fails the comparison.
"""

from __future__ import annotations

from typing import Any

import torch

from worker.engine.deepseek.loader import LoadedModel
from worker.engine.profiles import ModelProfile

PROMPT_TOKENS = 24
SEED = 5


def visible_keys(length: int, prompt: int, window: int | None) -> torch.Tensor:
    """``[length, length]``: may query position q attend to key position k."""
    query = torch.arange(length)[:, None]
    key = torch.arange(length)[None, :]
    causal = key <= query
    if window is None:
        return causal
    in_window = key > query - window
    return causal & ((key < prompt) | in_window)


def explicit_mask_logits(model: Any, ids: torch.Tensor, prompt: int, window: int | None) -> torch.Tensor:
    """Logits of one forward pass over ``ids`` with the attention mask of ``window`` given explicitly."""
    mask = visible_keys(len(ids), prompt, window)[None, None]
    text_model = model.model.language_model
    with torch.inference_mode():
        hidden = text_model(
            input_ids=ids[None],
            attention_mask={"full_attention": mask, "reference_sliding_attention": mask},
            position_ids=torch.arange(len(ids))[None],
            use_cache=False,
        ).last_hidden_state
        logits: torch.Tensor = model.lm_head(hidden)[0]
    return logits


def served_generation(
    model: Any, prompt_ids: torch.Tensor, new_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy ids and the raw logits of every step, through ``generate`` and its cache."""
    with torch.inference_mode():
        output = model.generate(
            input_ids=prompt_ids[None],
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    generated = output.sequences[0, len(prompt_ids) :]
    return generated, torch.stack(output.logits)[:, 0]


def test_the_served_attention_is_the_profiles(tiny_model: LoadedModel, profile: ModelProfile) -> None:
    window = profile.attention_window
    new_tokens = (window or 64) + 16
    prompt_ids = torch.randint(3, 259, (PROMPT_TOKENS,), generator=torch.Generator().manual_seed(SEED))
    model = tiny_model.model
    generated, served = served_generation(model, prompt_ids, new_tokens)
    sequence = torch.cat([prompt_ids, generated])[:-1]  # the last id is never fed back
    positions = slice(PROMPT_TOKENS - 1, None)  # the logits that chose each generated id

    def distance(candidate_window: int | None) -> float:
        expected = explicit_mask_logits(model, sequence, PROMPT_TOKENS, candidate_window)[positions]
        return float((served - expected).abs().max() / expected.abs().max())

    assert distance(window) < 1e-5
    wrong = [64, 32] if window is None else [None, window - 1, window + 1]
    for candidate in wrong:
        assert distance(candidate) > 1e-3, f"a window of {candidate} is indistinguishable from the profile's"
