"""One profile per model family the engine serves: what differs between DeepSeek-OCR and Unlimited-OCR.

Both checkpoints are DeepSeek-OCR's network (DeepEncoder, the five resolution modes and their
token layout, the 3B MoE decoder) served through transformers' ``unlimited_ocr`` classes. A
profile says how a published checkpoint of the family is recognised, how its decoder attends
(full attention for DeepSeek-OCR, reference sliding-window attention for Unlimited-OCR), its
context and default output cap, its prompts, its no-repeat guard, the rasterisation dpi its
authors use, and its licence. Every value and its source is listed in docs/ENGINE.md; a value a
family's authors did not publish is DeepSeek-OCR's.

No torch here: the fleet side (routing, rasterisation, settings) reads profiles too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scriptorium.model_families import MODEL_FAMILY_NAMES, ModelFamily
from worker.engine.base import PromptTask

TABLE_CELL_IDS = (128821, 128822)  # <td>, </td>

_V1_PROMPTS: Mapping[PromptTask, str] = {
    PromptTask.MARKDOWN: "<image>\n<|grounding|>Convert the document to markdown.",
    PromptTask.FREE_OCR: "<image>\nFree OCR.",
    PromptTask.FIGURE: "<image>\nParse the figure.",
    PromptTask.LOCATE: "<image>\nLocate <|ref|>{query}<|/ref|> in the image.",
}


class UnknownCheckpoint(ValueError):
    """A config.json that is not the published form of any family the engine serves."""


@dataclass(frozen=True)
class RepetitionDefaults:
    """The windowed no-repeat n-gram guard a family's authors run with."""

    ngram_size: int
    window: int
    whitelist: tuple[int, ...]


@dataclass(frozen=True)
class ModelProfile:
    family: ModelFamily
    title: str
    hub_id: str
    licence: str
    default_model_dir: str  # where docker-compose and fetch_model.py put the checkpoint
    config_model_types: frozenset[str]  # config.json "model_type" of the published checkpoint
    config_architectures: frozenset[str]  # config.json "architectures" of the published checkpoint
    context_length: int  # prompt + output per page
    default_max_new_tokens: int | None  # None: the context minus the prompt
    attention_window: int | None  # generated tokens each one attends to; None: full attention
    prompts: Mapping[PromptTask, str]
    repetition: RepetitionDefaults
    dpi: int  # rasterisation dpi of the authors' PDF pipeline

    @property
    def revision_prefix(self) -> str:
        return f"{self.family.value}-"

    @property
    def reference_sliding_window(self) -> bool:
        return self.attention_window is not None

    def cached_new_tokens(self, new_tokens: int) -> int:
        """Key/value positions ``new_tokens`` generated ids occupy at the end of a call."""
        if self.attention_window is None:
            return new_tokens
        return min(new_tokens, self.attention_window)


DEEPSEEK_OCR = ModelProfile(
    family=ModelFamily.DEEPSEEK_OCR,
    title="DeepSeek-OCR",
    hub_id="deepseek-ai/DeepSeek-OCR",
    licence="MIT",
    default_model_dir="/models/DeepSeek-OCR",
    config_model_types=frozenset({"deepseek_vl_v2", "DeepseekOCR"}),
    config_architectures=frozenset({"DeepseekOCRForCausalLM"}),
    context_length=8192,
    default_max_new_tokens=None,
    attention_window=None,
    prompts=_V1_PROMPTS,
    repetition=RepetitionDefaults(ngram_size=20, window=50, whitelist=TABLE_CELL_IDS),
    dpi=144,
)

UNLIMITED_OCR = ModelProfile(
    family=ModelFamily.UNLIMITED_OCR,
    title="Unlimited-OCR",
    hub_id="baidu/Unlimited-OCR",
    licence="MIT",
    default_model_dir="/models/Unlimited-OCR",
    config_model_types=frozenset({"unlimited-ocr"}),
    config_architectures=frozenset({"UnlimitedOCRForCausalLM"}),
    context_length=32768,
    default_max_new_tokens=None,
    attention_window=128,
    prompts={**_V1_PROMPTS, PromptTask.MARKDOWN: "<image>document parsing."},
    repetition=RepetitionDefaults(ngram_size=35, window=128, whitelist=()),
    dpi=300,
)

PROFILES: Mapping[ModelFamily, ModelProfile] = {
    profile.family: profile for profile in (DEEPSEEK_OCR, UNLIMITED_OCR)
}


def profile_of(family: ModelFamily | str) -> ModelProfile:
    return PROFILES[ModelFamily(family)]


def identify_checkpoint(config: Mapping[str, Any]) -> ModelProfile:
    """The family whose published config.json ``config`` is, or :class:`UnknownCheckpoint`."""
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if not isinstance(architectures, list):
        architectures = [architectures]
    for profile in PROFILES.values():
        architecture_known = not architectures or bool(profile.config_architectures & set(architectures))
        if model_type in profile.config_model_types and architecture_known:
            return profile
    if model_type == "unlimited_ocr":
        published = ", ".join(f"{profile.family.value}: {profile.hub_id}" for profile in PROFILES.values())
        raise UnknownCheckpoint(
            "config.json is a transformers-native save (model_type 'unlimited_ocr'); "
            f"serve the checkpoint in its published layout ({published})"
        )
    known = "; ".join(
        f"{profile.family.value}: model_type {' or '.join(sorted(profile.config_model_types))} "
        f"with architectures {' or '.join(sorted(profile.config_architectures))}"
        for profile in PROFILES.values()
    )
    raise UnknownCheckpoint(
        f"config.json (model_type {model_type!r}, architectures {architectures!r}) is not a checkpoint "
        f"of a served family ({', '.join(MODEL_FAMILY_NAMES)}); expected {known}"
    )


def identify_checkpoint_directory(directory: Path) -> ModelProfile:
    """The family of the checkpoint in ``directory``, from its config.json alone (no weights read):
    what a GPU worker serves, known before it loads anything."""
    config_file = directory / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnknownCheckpoint(f"{config_file} is not a readable config.json: {error}") from error
    if not isinstance(config, dict):
        raise UnknownCheckpoint(f"{config_file} must hold a JSON object")
    return identify_checkpoint(config)
