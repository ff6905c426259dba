"""Loading DeepSeek-OCR or Unlimited-OCR weights into transformers' native ``unlimited_ocr`` model.

The checkpoint is read as published: its config.json identifies the family (a checkpoint of
neither is refused) and is translated into the serving config with the family's attention (see
:mod:`worker.engine.deepseek.architecture`), the original tensor names are mapped by
transformers' ``unlimited_ocr`` conversion, and anything missing or left over is an error rather
than silently random weights.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scriptorium.settings import EngineSettings
from worker.engine.deepseek.architecture import DeepSeekOcrArchitecture, UnsupportedConfig
from worker.engine.deepseek.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_INDEX_FILE,
    CheckpointError,
    CheckpointFiles,
    inspect_checkpoint,
    resolve_model_path,
    tensor_names,
)
from worker.engine.deepseek.layout import UNUSED_CLIP_PATCH_EMBEDDING
from worker.engine.deepseek.prompts import PromptTokenizer
from worker.engine.deepseek.revision import checkpoint_revision
from worker.engine.deepseek.special_tokens import BOS, EOS, PAD
from worker.engine.profiles import ModelProfile

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float32": torch.float32,
    "fp32": torch.float32,
}
ATTENTION_IMPLEMENTATIONS = frozenset({"sdpa", "flash_attention_2", "eager"})
# Keys of the released file that the model does not use and transformers leaves unread.
IGNORED_CHECKPOINT_KEYS = frozenset({UNUSED_CLIP_PATCH_EMBEDDING})


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # transformers UnlimitedOcrForConditionalGeneration, in eval mode on `device`
    tokenizer: PromptTokenizer
    architecture: DeepSeekOcrArchitecture
    device: torch.device
    dtype: torch.dtype
    attention: str
    revision: str
    load_seconds: float
    max_context: int  # prompt + output per page, as served

    @property
    def profile(self) -> ModelProfile:
        return self.architecture.profile


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(
            f"engine device {requested!r} is not a device name (auto, cpu, cuda, cuda:N)"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"engine device {requested!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"engine device {requested!r} does not exist ({torch.cuda.device_count()} GPUs)")
    elif device.type != "cpu":
        raise ValueError(f"engine device {requested!r} is not supported (auto, cpu, cuda, cuda:N)")
    return device


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if requested not in DTYPES:
        raise ValueError(f"engine dtype {requested!r} is not one of auto, {', '.join(sorted(DTYPES))}")
    return DTYPES[requested]


def resolve_attention(
    requested: str, device: torch.device, dtype: torch.dtype, *, reference_window: bool = False
) -> str:
    """The decoder's attention kernel; the vision tower always uses SDPA (it needs an additive bias).

    Reference sliding-window attention needs its own mask (prompt plus a window of generated
    tokens), which transformers' flash-attention 2 path cannot take, so it runs on SDPA or eager.
    """
    if reference_window and requested == "flash_attention_2":
        raise ValueError(
            "engine attention flash_attention_2 cannot compute reference sliding-window attention "
            "(Unlimited-OCR); use auto, sdpa or eager"
        )
    if requested == "auto":
        flash_usable = (
            not reference_window
            and device.type == "cuda"
            and dtype in (torch.bfloat16, torch.float16)
            and importlib.util.find_spec("flash_attn") is not None
        )
        return "flash_attention_2" if flash_usable else "sdpa"
    if requested not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"engine attention {requested!r} is not one of auto, "
            f"{', '.join(sorted(ATTENTION_IMPLEMENTATIONS))}"
        )
    return requested


def load_model(settings: EngineSettings) -> LoadedModel:
    """Find, check and load the checkpoint named by ``settings.model_path`` onto its device."""
    import time

    started = time.perf_counter()
    files = inspect_checkpoint(resolve_model_path(settings.model_path))
    architecture = read_architecture(files)
    profile = architecture.profile
    if settings.family is not None and settings.family is not profile.family:
        raise CheckpointError(
            f"{files.root} is a {profile.family} checkpoint ({profile.title}), "
            f"but this engine is set to serve {settings.family}"
        )
    tokenizer = PromptTokenizer.from_file(files.tokenizer, profile.prompts)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    attention = resolve_attention(
        settings.attention, device, dtype, reference_window=profile.reference_sliding_window
    )
    max_context = settings.max_context or profile.context_length
    model = load_weights(
        files, architecture, device=device, dtype=dtype, attention=attention, max_context=max_context
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        architecture=architecture,
        device=device,
        dtype=dtype,
        attention=attention,
        revision=checkpoint_revision(files, prefix=profile.revision_prefix),
        load_seconds=time.perf_counter() - started,
        max_context=max_context,
    )


def read_architecture(files: CheckpointFiles) -> DeepSeekOcrArchitecture:
    """The checkpoint's architecture and family from its config.json; a clear error if neither is known."""
    try:
        return DeepSeekOcrArchitecture.from_config(files.read_config())
    except UnsupportedConfig as error:
        raise CheckpointError(f"{files.config}: {error}") from error


def load_weights(
    files: CheckpointFiles,
    architecture: DeepSeekOcrArchitecture,
    *,
    device: torch.device,
    dtype: torch.dtype,
    attention: str = "sdpa",
    max_context: int = 8192,
) -> Any:
    """The serving model with every weight read from the checkpoint; nothing left random."""
    from transformers import GenerationConfig, UnlimitedOcrForConditionalGeneration
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    attention_by_part = {"": "sdpa" if attention != "eager" else "eager", "text_config": attention}
    generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=BOS.id, eos_token_id=EOS.id, pad_token_id=PAD.id
    )
    with _loadable_directory(files) as directory:
        try:
            loaded: Any = UnlimitedOcrForConditionalGeneration.from_pretrained(
                str(directory),
                config=architecture.serving_config(max_context=max_context),
                dtype=dtype,
                attn_implementation=attention_by_part,
                generation_config=generation_config,
                output_loading_info=True,
            )
        except Exception as error:  # any failure here means the files cannot be served
            raise CheckpointError(f"cannot load the weights in {files.root}: {error}") from error
    model, info = loaded
    _check_loading_info(files, info)
    return model.to(device).eval()


def _check_loading_info(files: CheckpointFiles, info: dict[str, Any]) -> None:
    problems = []
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(set(info.get("unexpected_keys") or ()) - IGNORED_CHECKPOINT_KEYS)
    mismatched = list(info.get("mismatched_keys") or ())
    if missing:
        problems.append(
            f"{len(missing)} model tensors missing from the checkpoint (e.g. {', '.join(missing[:3])})"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unknown tensors in the checkpoint (e.g. {', '.join(unexpected[:3])})"
        )
    if mismatched:
        problems.append(f"{len(mismatched)} tensors with the wrong shape (e.g. {mismatched[:3]})")
    if problems:
        raise CheckpointError(f"{files.root} does not match its config.json: {'; '.join(problems)}")


@contextmanager
def _loadable_directory(files: CheckpointFiles) -> Iterator[Path]:
    """A directory transformers can load: the checkpoint itself, or links plus a generated index.

    transformers finds weights through ``model.safetensors`` or an index file; a copy of the
    checkpoint that kept only ``model-00001-of-000001.safetensors`` gets an index made here.
    """
    if files.index is not None or (files.root / "model.safetensors").is_file():
        yield files.root
        return
    with tempfile.TemporaryDirectory(prefix="dsocr-load-") as scratch:
        directory = Path(scratch)
        weight_map: dict[str, str] = {}
        for weight in files.weights:
            (directory / weight.name).symlink_to(weight.resolve())
            weight_map.update(dict.fromkeys(tensor_names(weight), weight.name))
        (directory / CONFIG_FILE).symlink_to(files.config.resolve())
        index = {"metadata": {}, "weight_map": weight_map}
        (directory / WEIGHTS_INDEX_FILE).write_text(json.dumps(index), encoding="utf-8")
        yield directory
