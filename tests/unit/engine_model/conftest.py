from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scriptorium.model_families import ModelFamily
from scriptorium.settings import EngineSettings
from worker.engine.deepseek.engine import DeepSeekOcrEngine
from worker.engine.deepseek.loader import LoadedModel, load_model
from worker.engine.deepseek.tiny_checkpoint import write_tiny_checkpoint
from worker.engine.profiles import ModelProfile, profile_of

EngineFactory = Callable[..., DeepSeekOcrEngine]


@pytest.fixture(scope="session", params=list(ModelFamily), ids=[family.value for family in ModelFamily])
def family(request: pytest.FixtureRequest) -> ModelFamily:
    """Every engine test that uses the tiny model runs once per served model family."""
    family: ModelFamily = request.param
    return family


@pytest.fixture(scope="session")
def profile(family: ModelFamily) -> ModelProfile:
    return profile_of(family)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, family: ModelFamily) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{family.value}"), seed=0, family=family)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path) -> LoadedModel:
    return load_model(EngineSettings(model_path=str(tiny_checkpoint), device="cpu"))


@pytest.fixture
def make_engine(tiny_checkpoint: Path, tiny_model: LoadedModel) -> EngineFactory:
    """An engine over the session's loaded tiny model, with engine settings overridden."""

    def build(**overrides: Any) -> DeepSeekOcrEngine:
        settings = EngineSettings(model_path=str(tiny_checkpoint), device="cpu", **overrides)
        return DeepSeekOcrEngine(settings, loaded=tiny_model)

    return build


def published_config() -> dict[str, Any]:
    """deepseek-ai/DeepSeek-OCR's config.json as published (reference notes, section 6.1)."""
    language = {
        "bos_token_id": 0,
        "eos_token_id": 1,
        "first_k_dense_replace": 1,
        "hidden_size": 1280,
        "intermediate_size": 6848,
        "kv_lora_rank": None,
        "lm_head": True,
        "max_position_embeddings": 8192,
        "moe_intermediate_size": 896,
        "n_group": 1,
        "n_routed_experts": 64,
        "n_shared_experts": 2,
        "num_attention_heads": 10,
        "num_experts_per_tok": 6,
        "num_hidden_layers": 12,
        "num_key_value_heads": 10,
        "q_lora_rank": None,
        "qk_nope_head_dim": 0,
        "qk_rope_head_dim": 0,
        "rm_head": False,
        "topk_group": 1,
        "topk_method": "greedy",
        "use_mla": False,
        "v_head_dim": 0,
        "vocab_size": 129280,
    }
    return {
        **language,
        "architectures": ["DeepseekOCRForCausalLM"],
        "model_type": "deepseek_vl_v2",
        "candidate_resolutions": [[1024, 1024]],
        "global_view_pos": "head",
        "tile_tag": "2D",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "language_config": {
            **language,
            "architectures": ["DeepseekV2ForCausalLM"],
            "torch_dtype": "bfloat16",
        },
        "projector_config": {
            "input_dim": 2048,
            "model_type": "mlp_projector",
            "n_embed": 1280,
            "projector_type": "linear",
        },
        "vision_config": {
            "image_size": 1024,
            "mlp_ratio": 3.7362,
            "model_name": "deeplip_b_l",
            "model_type": "vision",
            "width": {
                "clip-l-14-224": {
                    "heads": 16,
                    "image_size": 224,
                    "layers": 24,
                    "patch_size": 14,
                    "width": 1024,
                },
                "sam_vit_b": {
                    "downsample_channels": [512, 1024],
                    "global_attn_indexes": [2, 5, 8, 11],
                    "heads": 12,
                    "layers": 12,
                    "width": 768,
                },
            },
        },
    }


def published_unlimited_config() -> dict[str, Any]:
    """baidu/Unlimited-OCR's config.json as published: DeepSeek-OCR's form with its own model type,
    a 32k context and a 128-token attention window (docs/ENGINE.md lists the source)."""
    config = published_config()
    window = {"sliding_window_size": 128}
    language = {
        **config["language_config"],
        **window,
        "architectures": ["DeepseekOCRForCausalLM"],
        "max_position_embeddings": 32768,
        "v_head_dim": 128,
    }
    return {
        **config,
        **window,
        "_name_or_path": "Unlimited-OCR",
        "architectures": ["UnlimitedOCRForCausalLM"],
        "auto_map": {
            "AutoConfig": "modeling_unlimitedocr.UnlimitedOCRConfig",
            "AutoModel": "modeling_unlimitedocr.UnlimitedOCRForCausalLM",
        },
        "model_type": "unlimited-ocr",
        "max_position_embeddings": 32768,
        "v_head_dim": 128,
        "sliding_window": 128,
        "language_config": language,
    }
