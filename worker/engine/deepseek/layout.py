"""Tensor names and shapes of a DeepSeek-OCR checkpoint in its original (published) layout.

The released safetensors file uses the names of the official code (``model.sam_model.*``,
``model.vision_model.*`` with a fused ``qkv_proj``, ``model.projector.layers.*``,
``model.view_seperator``, one tensor per MoE expert ...). transformers renames them on load. The
layout is derived here from the serving model itself, built on the meta device, by undoing those
renames, so a checkpoint written from it is exactly what the loader expects to read.
"""

from __future__ import annotations

import re

from worker.engine.deepseek.architecture import DeepSeekOcrArchitecture

Shape = tuple[int, ...]

# Present in the released file, unused by the model (CLIP's own patch embedding is bypassed).
UNUSED_CLIP_PATCH_EMBEDDING = "model.vision_model.embeddings.patch_embedding.weight"

_SAM_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^layers\.(\d+)\.layer_norm1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.layer_norm2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.", r"blocks.\1."),
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^neck\.conv1\.", "neck.0."),
    (r"^neck\.layer_norm1\.", "neck.1."),
    (r"^neck\.conv2\.", "neck.2."),
    (r"^neck\.layer_norm2\.", "neck.3."),
    (r"^proj\.conv1\.", "net_2."),
    (r"^proj\.conv2\.", "net_3."),
)
_SAM_PREFIX = "model.vision_tower.sam_encoder."
_CLIP_PREFIX = "model.vision_tower.vision_encoder."
_DECODER_PREFIX = "model.language_model."
_CLIP_SPLIT_PROJECTION = re.compile(
    r"^(?P<layer>.*\.self_attn\.)(?P<part>[qkv])_proj\.(?P<kind>weight|bias)$"
)
_MERGED_EXPERTS = re.compile(
    r"^(?P<layer>model\.layers\.\d+\.mlp\.experts)\.(?P<part>gate_up_proj|down_proj)$"
)


def serving_tensor_shapes(architecture: DeepSeekOcrArchitecture, *, max_context: int) -> dict[str, Shape]:
    """Names and shapes of the transformers model's state dict, computed without allocating it."""
    import torch
    from transformers import UnlimitedOcrForConditionalGeneration

    with torch.device("meta"):
        model = UnlimitedOcrForConditionalGeneration(architecture.serving_config(max_context=max_context))
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def original_tensor_shapes(
    architecture: DeepSeekOcrArchitecture, *, max_context: int = 8192
) -> dict[str, Shape]:
    """Names and shapes of every tensor in the published checkpoint layout for ``architecture``."""
    layout: dict[str, Shape] = {}
    fused_clip: dict[tuple[str, str], int] = {}
    experts = architecture.decoder.n_routed_experts
    for name, shape in serving_tensor_shapes(architecture, max_context=max_context).items():
        if name.startswith(_SAM_PREFIX):
            layout["model.sam_model." + _rename_sam(name.removeprefix(_SAM_PREFIX))] = shape
        elif name.startswith(_CLIP_PREFIX):
            clip_name = name.removeprefix(_CLIP_PREFIX).replace("encoder.", "transformer.", 1)
            split = _CLIP_SPLIT_PROJECTION.match(clip_name)
            if split is None:
                layout["model.vision_model." + clip_name] = shape
            else:
                key = (split["layer"], split["kind"])
                fused_clip[key] = fused_clip.get(key, 0) + shape[0]
                layout[f"model.vision_model.{split['layer']}qkv_proj.{split['kind']}"] = (
                    fused_clip[key],
                    *shape[1:],
                )
        elif name == "model.multi_modal_projector.weight":
            layout["model.projector.layers.weight"] = shape
        elif name == "model.multi_modal_projector.bias":
            layout["model.projector.layers.bias"] = shape
        elif name == "model.view_separator":
            layout["model.view_seperator"] = shape
        elif name.startswith(_DECODER_PREFIX):
            layout.update(
                _original_decoder_tensors("model." + name.removeprefix(_DECODER_PREFIX), shape, experts)
            )
        else:
            layout[name] = shape
    clip = architecture.clip
    layout[UNUSED_CLIP_PATCH_EMBEDDING] = (clip.width, 3, clip.patch_size, clip.patch_size)
    return layout


def _rename_sam(name: str) -> str:
    for pattern, replacement in _SAM_RENAMES:
        renamed = re.sub(pattern, replacement, name)
        if renamed != name:
            return renamed
    return name


def _original_decoder_tensors(name: str, shape: Shape, experts: int) -> dict[str, Shape]:
    match = _MERGED_EXPERTS.match(name)
    if match is None:
        return {name: shape}
    layer, part = match["layer"], match["part"]
    if part == "down_proj":
        return {f"{layer}.{index}.down_proj.weight": shape[1:] for index in range(experts)}
    per_expert = (shape[1] // 2, shape[2])
    tensors: dict[str, Shape] = {}
    for index in range(experts):
        tensors[f"{layer}.{index}.gate_proj.weight"] = per_expert
        tensors[f"{layer}.{index}.up_proj.weight"] = per_expert
    return tensors
