"""Finding and checking a DeepSeek-OCR or Unlimited-OCR checkpoint on disk (or fetching it by hub id)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
WEIGHTS_FILE = "model-00001-of-000001.safetensors"  # as deepseek-ai/DeepSeek-OCR names it
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
HUB_DOWNLOAD_PATTERNS = ("*.json", "*.safetensors")
_MAX_HEADER_BYTES = 100 * 1024 * 1024


class CheckpointError(Exception):
    """The model directory cannot be served: files missing, unreadable or not a served family."""


@dataclass(frozen=True)
class CheckpointFiles:
    root: Path
    config: Path
    tokenizer: Path
    weights: tuple[Path, ...]
    index: Path | None

    def read_config(self) -> dict[str, Any]:
        try:
            config = json.loads(self.config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"{self.config} is not readable JSON: {error}") from error
        if not isinstance(config, dict):
            raise CheckpointError(f"{self.config} must hold a JSON object")
        return config


def resolve_model_path(model_path: str) -> Path:
    """The local directory for ``model_path``: the path itself, or a hub download of that repo id."""
    path = Path(model_path).expanduser()
    if path.exists():
        return path
    if not _looks_like_hub_id(model_path):
        raise CheckpointError(f"model directory {path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_path, allow_patterns=list(HUB_DOWNLOAD_PATTERNS)))
    except Exception as error:
        raise CheckpointError(
            f"{model_path!r} is not a local directory and could not be fetched from the hub ({error}); "
            "on a host without network, download the checkpoint elsewhere and point model_path at it"
        ) from error


def inspect_checkpoint(root: Path) -> CheckpointFiles:
    """Check that ``root`` holds a checkpoint in the published layout, naming everything missing."""
    if not root.is_dir():
        raise CheckpointError(f"model path {root} is not a directory")
    missing = [name for name in (CONFIG_FILE, TOKENIZER_FILE) if not (root / name).is_file()]
    index = root / WEIGHTS_INDEX_FILE
    if index.is_file():
        weights = tuple(root / name for name in _indexed_weight_files(index))
        missing += [path.name for path in weights if not path.is_file()]
    else:
        weights = tuple(sorted(root.glob("*.safetensors")))
        if not weights:
            missing.append(WEIGHTS_FILE)
    if missing:
        raise CheckpointError(
            f"{root} is not a complete checkpoint: missing {', '.join(missing)} "
            f"(expected {CONFIG_FILE}, {TOKENIZER_FILE} and safetensors weights "
            "as published in deepseek-ai/DeepSeek-OCR or baidu/Unlimited-OCR)"
        )
    for weight in weights:
        check_safetensors(weight)
    return CheckpointFiles(
        root=root,
        config=root / CONFIG_FILE,
        tokenizer=root / TOKENIZER_FILE,
        weights=weights,
        index=index if index.is_file() else None,
    )


def read_safetensors_header(path: Path) -> bytes:
    """The raw JSON header of a safetensors file: every tensor's name, dtype, shape and offsets."""
    try:
        with path.open("rb") as stream:
            prefix = stream.read(8)
            if len(prefix) != 8:
                raise CheckpointError(f"{path} is too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER_BYTES:
                raise CheckpointError(f"{path} is not a safetensors file (header length {length})")
            header = stream.read(length)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if len(header) != length:
        raise CheckpointError(f"{path} is truncated")
    return header


def tensor_names(path: Path) -> set[str]:
    return set(_tensor_entries(path))


def check_safetensors(path: Path) -> None:
    """Raise when the file's header is corrupt or its data is shorter than the header says."""
    header_length = len(read_safetensors_header(path))
    try:
        data_length = max(
            (int(entry["data_offsets"][1]) for entry in _tensor_entries(path).values()), default=0
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has a corrupt safetensors header: {error!r}") from error
    if path.stat().st_size < 8 + header_length + data_length:
        raise CheckpointError(f"{path} is truncated: its header describes {data_length} bytes of tensors")


def _tensor_entries(path: Path) -> dict[str, Any]:
    try:
        header = json.loads(read_safetensors_header(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} has a corrupt safetensors header: {error}") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt safetensors header")
    return {name: entry for name, entry in header.items() if name != "__metadata__"}


def _indexed_weight_files(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{index} is not a valid safetensors index: {error}") from error


def _looks_like_hub_id(model_path: str) -> bool:
    parts = model_path.split("/")
    return len(parts) == 2 and all(parts) and not model_path.startswith((".", "~"))
