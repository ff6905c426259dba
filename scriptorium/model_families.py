"""The model families the fleet can serve, by the names used everywhere (API, settings, CLI, JSON).

Both families share DeepSeek-OCR's encoder, its five resolution modes and their token layout, so
everything mode-based (routing, escalation, accounting, batching) applies to either. What differs
per family lives in the engine's profiles (``worker.engine.profiles``).
"""

from __future__ import annotations

from enum import StrEnum


class ModelFamily(StrEnum):
    DEEPSEEK_OCR = "deepseek-ocr"  # deepseek-ai/DeepSeek-OCR (v1)
    UNLIMITED_OCR = (
        "unlimited-ocr"  # baidu/Unlimited-OCR, continued from v1 with reference sliding-window attention
    )


DEFAULT_MODEL_FAMILY = ModelFamily.DEEPSEEK_OCR
MODEL_FAMILY_NAMES: tuple[str, ...] = tuple(family.value for family in ModelFamily)


def parse_model_family(value: str) -> ModelFamily:
    """The family called ``value``; a clear error naming the known families otherwise."""
    try:
        return ModelFamily(value)
    except ValueError:
        raise ValueError(
            f"unknown model family {value!r}; expected one of {', '.join(MODEL_FAMILY_NAMES)}"
        ) from None
