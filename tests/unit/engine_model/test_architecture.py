from __future__ import annotations

from typing import Any

import pytest

from scriptorium.model_families import ModelFamily
from tests.unit.engine_model.conftest import published_config, published_unlimited_config
from worker.engine.deepseek.architecture import (
    DeepSeekOcrArchitecture,
    UnsupportedConfig,
)
from worker.engine.deepseek.layout import UNUSED_CLIP_PATCH_EMBEDDING, original_tensor_shapes
from worker.engine.deepseek.tiny_checkpoint import TINY_ARCHITECTURE

# The released file holds 2,710 tensors and 3,336,106,240 parameters (reference notes, sections 4 and 6).
RELEASED_TENSORS = 2710
RELEASED_PARAMETERS = 3_336_106_240


def test_published_config_is_read_with_the_real_widths() -> None:
    architecture = DeepSeekOcrArchitecture.from_config(published_config())

    assert architecture == DeepSeekOcrArchitecture()  # the defaults are the released network
    assert architecture.sam.mlp_dim == 3072
    assert architecture.sam.neck_channels == 256
    assert architecture.projector_input_dim == 2048


def test_serving_config_fixes_what_the_defaults_get_wrong() -> None:
    config: Any = DeepSeekOcrArchitecture.from_config(published_config()).serving_config(max_context=8192)
    text = config.text_config

    assert config.model_type == "unlimited_ocr"
    assert text.sliding_window >= 8192
    assert text.layer_types == ["full_attention"] * 12
    assert text.mlp_layer_types == ["dense"] + ["sparse"] * 11
    assert dict(text.rope_parameters) == {"rope_type": "default", "rope_theta": 10000.0}
    assert (text.n_routed_experts, text.num_experts_per_tok, text.n_shared_experts) == (64, 6, 2)
    assert (text.topk_method, text.routed_scaling_factor, text.rms_norm_eps) == ("greedy", 1.0, 1e-6)
    assert (text.head_dim, text.attention_bias, text.bos_token_id, text.eos_token_id) == (128, False, 0, 1)
    assert config.image_token_id == 128815
    assert config.tie_word_embeddings is False
    sam, clip = config.vision_config.sam_config, config.vision_config.encoder_config
    assert (sam.hidden_size, sam.num_hidden_layers, sam.num_attention_heads, sam.window_size) == (
        768,
        12,
        12,
        14,
    )
    assert list(sam.global_attn_indexes) == [2, 5, 8, 11]
    assert list(sam.downsample_channels) == [512, 1024]
    assert (clip.hidden_size, clip.num_hidden_layers, clip.num_attention_heads, clip.intermediate_size) == (
        1024,
        24,
        16,
        4096,
    )


def test_published_unlimited_ocr_config_is_the_same_network_with_its_window() -> None:
    architecture = DeepSeekOcrArchitecture.from_config(published_unlimited_config())

    assert architecture.family is ModelFamily.UNLIMITED_OCR
    assert architecture.decoder.max_position_embeddings == 32768
    assert (architecture.sam, architecture.clip) == (
        DeepSeekOcrArchitecture().sam,
        DeepSeekOcrArchitecture().clip,
    )
    text: Any = architecture.serving_config(max_context=32768).text_config
    assert text.layer_types == ["reference_sliding_attention"] * 12
    assert text.sliding_window == 128
    assert text.max_position_embeddings == 32768
    assert len(original_tensor_shapes(architecture)) == RELEASED_TENSORS  # DeepSeek-OCR's tensor names


def test_the_written_config_is_read_back_as_the_same_family() -> None:
    for family in ModelFamily:
        architecture = DeepSeekOcrArchitecture(family=family)
        assert DeepSeekOcrArchitecture.from_config(architecture.to_config()) == architecture


def test_a_longer_context_widens_the_attention_window() -> None:
    config: Any = DeepSeekOcrArchitecture().serving_config(max_context=12_000)
    assert config.text_config.sliding_window == 12_000


def test_released_layout_has_every_published_tensor() -> None:
    layout = original_tensor_shapes(DeepSeekOcrArchitecture())

    assert len(layout) == RELEASED_TENSORS
    assert sum(_count(shape) for shape in layout.values()) == RELEASED_PARAMETERS
    assert layout["model.sam_model.pos_embed"] == (1, 64, 64, 768)
    assert layout["model.vision_model.embeddings.position_embedding.weight"] == (257, 1024)
    assert layout["model.vision_model.transformer.layers.0.self_attn.qkv_proj.weight"] == (3072, 1024)
    assert layout["model.projector.layers.weight"] == (1280, 2048)
    assert layout["model.view_seperator"] == (1280,)
    assert layout["model.layers.1.mlp.experts.63.down_proj.weight"] == (1280, 896)
    assert layout["model.layers.0.mlp.gate_proj.weight"] == (6848, 1280)
    assert layout["lm_head.weight"] == (129280, 1280)
    assert layout[UNUSED_CLIP_PATCH_EMBEDDING] == (1024, 3, 14, 14)


def test_config_round_trips_through_the_published_form() -> None:
    assert DeepSeekOcrArchitecture.from_config(TINY_ARCHITECTURE.to_config()) == TINY_ARCHITECTURE
    assert (
        DeepSeekOcrArchitecture.from_config(DeepSeekOcrArchitecture().to_config())
        == DeepSeekOcrArchitecture()
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("use_mla", True, "use_mla"),
        ("norm_topk_prob", True, "norm_topk_prob"),
        ("scoring_func", "sigmoid", "scoring_func"),
        ("topk_method", "noaux_tc", "topk_method"),
        ("rope_scaling", {"type": "yarn", "factor": 4}, "rope_scaling"),
        ("kv_lora_rank", 512, "kv_lora_rank"),
    ],
)
def test_configs_with_other_decoder_maths_are_refused(key: str, value: object, message: str) -> None:
    config = published_config()
    config["language_config"][key] = value
    with pytest.raises(UnsupportedConfig, match=message):
        DeepSeekOcrArchitecture.from_config(config)


def test_top_level_decoder_keys_count_when_language_config_lacks_them() -> None:
    config = published_config()
    config["norm_topk_prob"] = True
    with pytest.raises(UnsupportedConfig, match="norm_topk_prob"):
        DeepSeekOcrArchitecture.from_config(config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda config: config.update(model_type="qwen2_vl"), "model_type"),
        (lambda config: config.pop("language_config"), "language_config"),
        (lambda config: config["vision_config"]["width"].pop("sam_vit_b"), "sam_vit_b"),
        (lambda config: config["projector_config"].update(n_embed=1024), "n_embed"),
        (lambda config: config["projector_config"].update(projector_type="mlp_gelu"), "projector_type"),
    ],
)
def test_configs_that_are_not_deepseek_ocr_are_refused(change: object, message: str) -> None:
    config = published_config()
    change(config)  # type: ignore[operator]
    with pytest.raises(UnsupportedConfig, match=message):
        DeepSeekOcrArchitecture.from_config(config)


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
