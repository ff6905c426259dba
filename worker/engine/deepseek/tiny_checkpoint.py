"""Random-weight DeepSeek-OCR and Unlimited-OCR checkpoints in their published on-disk layout.

:func:`write_tiny_checkpoint` writes a checkpoint small enough to load and generate in seconds on
CPU, for tests and CI: the family's config.json form with tiny widths (for Unlimited-OCR with
its model type, 32k context and 128-token attention window), one safetensors file with the
original tensor names (both families publish DeepSeek-OCR's names), and a byte-level tokenizer
with the real special-token ids. The vision geometry stays real (16 px patches, SAM's 1024 px
position table, CLIP's 16 x 16 table, 16x compression), so every mode yields the real token
counts.

Weights are drawn per tensor from a seed derived from the tensor's name, so the same tensor has
the same values whatever else the checkpoint holds (the parity fixtures rely on this).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from worker.engine.deepseek.architecture import (
    ClipArchitecture,
    DecoderArchitecture,
    DeepSeekOcrArchitecture,
    SamArchitecture,
)
from worker.engine.deepseek.checkpoint import CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from worker.engine.deepseek.layout import Shape, original_tensor_shapes
from worker.engine.deepseek.special_tokens import BOS, IMAGE, PAD, REQUIRED_SPECIAL_TOKENS
from worker.engine.deepseek.tiny_tokenizer import byte_token_ids, write_tiny_tokenizer
from worker.engine.profiles import profile_of

TINY_ARCHITECTURE = DeepSeekOcrArchitecture(
    sam=SamArchitecture(
        width=32,
        layers=2,
        heads=2,
        global_attn_indexes=(1,),
        downsample_channels=(32, 48),
        mlp_dim=64,
        neck_channels=16,
    ),
    clip=ClipArchitecture(width=48, layers=1, heads=2, intermediate_size=96),
    decoder=DecoderArchitecture(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
    ),
)
LM_HEAD = "lm_head.weight"


def tiny_architecture(family: ModelFamily = DEFAULT_MODEL_FAMILY) -> DeepSeekOcrArchitecture:
    """The tiny widths with ``family``'s context length and attention."""
    decoder = replace(TINY_ARCHITECTURE.decoder, max_position_embeddings=profile_of(family).context_length)
    return replace(TINY_ARCHITECTURE, decoder=decoder, family=family)


NEVER_GENERATED = (BOS, PAD, IMAGE)
_NORM_MARKERS = ("norm", "layrnorm", "neck.1.", "neck.3.")


def seeded_tensor(name: str, shape: Shape, seed: int) -> torch.Tensor:
    """A float32 tensor for checkpoint tensor ``name``, reproducible from (name, seed) alone."""
    generator = torch.Generator().manual_seed(_tensor_seed(name, seed))
    values = torch.randn(shape, generator=generator)
    if name.endswith(("rel_pos_h", "rel_pos_w")):
        return values * 0.2
    if name.endswith(("pos_embed", "position_embedding.weight", "class_embedding")):
        return values * 0.1
    if name.endswith(".bias"):
        return values * 0.02
    if len(shape) == 1 and any(marker in name for marker in _NORM_MARKERS):
        return 1.0 + 0.1 * values
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
    return values / math.sqrt(fan_in)


def random_weights(architecture: DeepSeekOcrArchitecture, *, seed: int) -> dict[str, torch.Tensor]:
    """Every tensor of ``architecture`` in the original layout, drawn with :func:`seeded_tensor`."""
    return {
        name: seeded_tensor(name, shape, seed) for name, shape in original_tensor_shapes(architecture).items()
    }


def write_checkpoint(
    directory: Path,
    architecture: DeepSeekOcrArchitecture,
    weights: dict[str, torch.Tensor],
) -> Path:
    """Write config.json, the safetensors file, its index and the tiny tokenizer into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(architecture.to_config(), indent=2), encoding="utf-8")
    save_file(
        {name: tensor.contiguous() for name, tensor in weights.items()},
        str(directory / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    total_size = sum(tensor.numel() * tensor.element_size() for tensor in weights.values())
    index = {
        "metadata": {"total_size": total_size},
        "weight_map": dict.fromkeys(sorted(weights), WEIGHTS_FILE),
    }
    (directory / WEIGHTS_INDEX_FILE).write_text(json.dumps(index, indent=2), encoding="utf-8")
    write_tiny_tokenizer(directory, model_max_length=architecture.profile.context_length)
    return directory


def write_tiny_checkpoint(
    directory: Path, *, seed: int = 0, family: ModelFamily = DEFAULT_MODEL_FAMILY
) -> Path:
    """A tiny random checkpoint of ``family`` whose greedy output decodes to text with the tiny tokenizer.

    Output-head rows of ids the tiny tokenizer cannot spell are zero, so the random model picks
    byte tokens, EOS and the grounding tokens rather than ids that decode to nothing. The
    weights depend on the seed only, so both families' tiny checkpoints of one seed hold the
    same tensors and differ in config (attention) alone.
    """
    architecture = tiny_architecture(family)
    weights = random_weights(architecture, seed=seed)
    decodable = torch.zeros(architecture.decoder.vocab_size, dtype=torch.bool)
    decodable[list(byte_token_ids())] = True
    decodable[[token.id for token in REQUIRED_SPECIAL_TOKENS if token not in NEVER_GENERATED]] = True
    weights[LM_HEAD] = weights[LM_HEAD] * decodable[:, None]
    return write_checkpoint(directory, architecture, weights)


def _tensor_seed(name: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
