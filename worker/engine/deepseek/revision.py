"""A stable identifier of the weights, config and tokenizer an engine serves.

It hashes config.json, tokenizer.json and, for each weight file, its name, size, safetensors
header (every tensor's name, dtype, shape and offsets) and 64 blocks of 64 KiB sampled evenly
through it. That reads 4 MiB of a 6.7 GB file, is equal for identical copies of a checkpoint
wherever they live, and changes with the config, the tokenizer, the tensor layout, or weights
retrained with the same shapes (every tensor changes then, so the samples do).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from worker.engine.deepseek.checkpoint import CheckpointError, CheckpointFiles, read_safetensors_header

SAMPLED_BLOCKS = 64
BLOCK_BYTES = 64 * 1024


def checkpoint_revision(files: CheckpointFiles, *, prefix: str) -> str:
    """``prefix`` (the family, e.g. ``unlimited-ocr-``) and 16 hex digits of the digest."""
    digest = hashlib.sha256()
    for label, path in (("config", files.config), ("tokenizer", files.tokenizer)):
        try:
            content = path.read_bytes()
        except OSError as error:
            raise CheckpointError(f"cannot read {path}: {error}") from error
        _add_field(digest, label.encode())
        _add_field(digest, content)
    for path in sorted(files.weights, key=lambda weight: weight.name):
        _add_field(digest, path.name.encode())
        _add_field(digest, str(path.stat().st_size).encode())
        _add_field(digest, read_safetensors_header(path))
        for block in _sampled_blocks(path):
            _add_field(digest, block)
    return prefix + digest.hexdigest()[:16]


def _sampled_blocks(path: Path) -> list[bytes]:
    size = path.stat().st_size
    last_start = max(0, size - BLOCK_BYTES)
    offsets = sorted({index * last_start // (SAMPLED_BLOCKS - 1) for index in range(SAMPLED_BLOCKS)})
    try:
        with path.open("rb") as stream:
            blocks = []
            for offset in offsets:
                stream.seek(offset)
                blocks.append(stream.read(BLOCK_BYTES))
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    return blocks


def _add_field(digest: hashlib._Hash, field: bytes) -> None:
    digest.update(len(field).to_bytes(8, "little"))
    digest.update(field)
