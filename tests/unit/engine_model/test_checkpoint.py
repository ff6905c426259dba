from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scriptorium.model_families import ModelFamily
from scriptorium.settings import EngineSettings
from worker.engine.deepseek.checkpoint import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
    CheckpointError,
    inspect_checkpoint,
    tensor_names,
)
from worker.engine.deepseek.layout import original_tensor_shapes
from worker.engine.deepseek.loader import LoadedModel, load_model, read_architecture, resolve_attention
from worker.engine.deepseek.revision import checkpoint_revision
from worker.engine.deepseek.tiny_checkpoint import tiny_architecture, write_tiny_checkpoint
from worker.engine.profiles import ModelProfile


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def load(directory: Path) -> LoadedModel:
    return load_model(EngineSettings(model_path=str(directory), device="cpu"))


def test_tiny_checkpoint_has_the_published_layout(tiny_checkpoint: Path, profile: ModelProfile) -> None:
    files = sorted(path.name for path in tiny_checkpoint.iterdir())
    assert {CONFIG_FILE, TOKENIZER_FILE, "tokenizer_config.json", WEIGHTS_FILE, WEIGHTS_INDEX_FILE} <= set(
        files
    )
    config = json.loads((tiny_checkpoint / CONFIG_FILE).read_text())
    assert config["model_type"] in profile.config_model_types
    assert set(config["architectures"]) <= profile.config_architectures
    assert config["language_config"]["max_position_embeddings"] == profile.context_length
    assert config.get("sliding_window") == profile.attention_window
    assert {"language_config", "vision_config", "projector_config"} <= set(config)
    names = tensor_names(tiny_checkpoint / WEIGHTS_FILE)
    assert names == set(original_tensor_shapes(tiny_architecture(profile.family)))
    for original in (
        "model.sam_model.blocks.1.attn.rel_pos_h",
        "model.sam_model.net_3.weight",
        "model.vision_model.transformer.layers.0.self_attn.qkv_proj.weight",
        "model.projector.layers.weight",
        "model.view_seperator",
        "model.image_newline",
        "model.layers.1.mlp.experts.3.up_proj.weight",
        "model.layers.1.mlp.shared_experts.down_proj.weight",
        "lm_head.weight",
    ):
        assert original in names
    assert not any(name.startswith(("model.vision_tower", "model.language_model")) for name in names)


def test_tiny_checkpoint_loads_every_tensor_bit_for_bit(
    tiny_checkpoint: Path, tiny_model: LoadedModel
) -> None:
    written = load_file(str(tiny_checkpoint / WEIGHTS_FILE))
    state = tiny_model.model.state_dict()
    assert torch.equal(state["model.view_separator"], written["model.view_seperator"])
    assert torch.equal(
        state["model.vision_tower.sam_encoder.proj.conv2.weight"], written["model.sam_model.net_3.weight"]
    )
    q, _, v = written["model.vision_model.transformer.layers.0.self_attn.qkv_proj.weight"].chunk(3)
    clip_attention = "model.vision_tower.vision_encoder.encoder.layers.0.self_attn"
    assert torch.equal(state[f"{clip_attention}.q_proj.weight"], q)
    assert torch.equal(state[f"{clip_attention}.v_proj.weight"], v)
    gate_up = state["model.language_model.layers.1.mlp.experts.gate_up_proj"]
    assert torch.equal(gate_up[2, :32], written["model.layers.1.mlp.experts.2.gate_proj.weight"])
    assert torch.equal(gate_up[2, 32:], written["model.layers.1.mlp.experts.2.up_proj.weight"])
    assert torch.equal(state["lm_head.weight"], written["lm_head.weight"])
    assert not torch.equal(state["lm_head.weight"], state["model.language_model.embed_tokens.weight"])


def test_the_loaded_model_serves_the_adapted_config(tiny_model: LoadedModel, profile: ModelProfile) -> None:
    text = tiny_model.model.config.text_config
    assert tiny_model.profile is profile
    if profile.attention_window is None:
        assert text.sliding_window >= 8192
        assert set(text.layer_types) == {"full_attention"}
    else:
        assert text.sliding_window == profile.attention_window
        assert set(text.layer_types) == {"reference_sliding_attention"}
    assert tiny_model.max_context == profile.context_length
    assert (tiny_model.dtype, tiny_model.device.type, tiny_model.attention) == (torch.float32, "cpu", "sdpa")


def test_revision_is_stable_and_tracks_content(
    tmp_path: Path, tiny_checkpoint: Path, tiny_model: LoadedModel, profile: ModelProfile
) -> None:
    again = write_tiny_checkpoint(tmp_path / "again", seed=0, family=profile.family)
    other_seed = write_tiny_checkpoint(tmp_path / "other", seed=1, family=profile.family)
    files = inspect_checkpoint(tiny_checkpoint)
    prefix = profile.revision_prefix

    assert tiny_model.revision.startswith(prefix)
    assert tiny_model.revision == checkpoint_revision(files, prefix=prefix)
    assert checkpoint_revision(inspect_checkpoint(again), prefix=prefix) == tiny_model.revision
    assert (
        checkpoint_revision(inspect_checkpoint(other_seed), prefix=prefix) != tiny_model.revision
    )  # same shapes, other values
    config = json.loads((again / CONFIG_FILE).read_text())
    config["rope_theta"] = 20000.0
    (again / CONFIG_FILE).write_text(json.dumps(config))
    assert checkpoint_revision(inspect_checkpoint(again), prefix=prefix) != tiny_model.revision


def test_a_copy_without_the_index_file_loads(
    tmp_path: Path, tiny_checkpoint: Path, tiny_model: LoadedModel
) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "no-index")
    (copy / WEIGHTS_INDEX_FILE).unlink()
    loaded = load(copy)
    assert torch.equal(loaded.model.lm_head.weight, tiny_model.model.lm_head.weight)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")


@pytest.mark.parametrize("missing", [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE])
def test_missing_files_are_named(tmp_path: Path, tiny_checkpoint: Path, missing: str) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "incomplete")
    (copy / missing).unlink()
    with pytest.raises(CheckpointError, match=f"missing {missing}"):
        load(copy)


def test_a_missing_tensor_is_an_error_not_random_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "short")
    weights = load_file(str(copy / WEIGHTS_FILE))
    del weights["model.sam_model.blocks.0.attn.qkv.weight"]
    save_file(weights, str(copy / WEIGHTS_FILE), metadata={"format": "pt"})
    (copy / WEIGHTS_INDEX_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        load(copy)


def test_a_truncated_weights_file_is_an_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "truncated")
    (copy / WEIGHTS_FILE).write_bytes((tiny_checkpoint / WEIGHTS_FILE).read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load(copy)


def test_a_foreign_config_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "foreign")
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["model_type"] = "llama"
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type 'llama'"):
        load(copy)


def test_a_tokenizer_with_other_special_ids_is_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "tokenizer")
    tokenizer = json.loads((copy / TOKENIZER_FILE).read_text())
    moved_id = 300
    tokenizer["model"]["vocab"]["<image>"] = moved_id
    for entry in tokenizer["added_tokens"]:
        if entry["content"] == "<image>":
            entry["id"] = moved_id
    (copy / TOKENIZER_FILE).write_text(json.dumps(tokenizer))
    with pytest.raises(CheckpointError, match="<image>"):
        load(copy)


def test_the_family_is_detected_from_the_checkpoint(tiny_checkpoint: Path, profile: ModelProfile) -> None:
    assert read_architecture(inspect_checkpoint(tiny_checkpoint)).family is profile.family


def test_an_engine_set_to_another_family_refuses_the_checkpoint(
    tiny_checkpoint: Path, profile: ModelProfile
) -> None:
    other = next(family for family in ModelFamily if family is not profile.family)
    with pytest.raises(CheckpointError, match=f"is a {profile.family} checkpoint.*set to serve {other}"):
        load_model(EngineSettings(model_path=str(tiny_checkpoint), device="cpu", family=other))


@pytest.mark.parametrize(
    ("model_type", "architectures"),
    [
        ("deepseek_vl_v2", ["DeepseekVLV2ForCausalLM"]),  # DeepSeek-VL2: same model type, another model
        ("unlimited_ocr", None),  # a transformers-native re-save, not the published layout
        ("deepseek_ocr2", ["DeepseekOCR2ForCausalLM"]),
    ],
)
def test_a_checkpoint_of_no_served_family_is_refused_by_name(
    tmp_path: Path, tiny_checkpoint: Path, model_type: str, architectures: list[str] | None
) -> None:
    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "unknown")
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["model_type"] = model_type
    config.pop("architectures")
    if architectures is not None:
        config["architectures"] = architectures
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=f"model_type '{model_type}'") as refused:
        load(copy)
    assert "deepseek-ocr" in str(refused.value) and "unlimited-ocr" in str(refused.value)


def test_an_unlimited_ocr_config_with_another_window_is_refused(
    tmp_path: Path, profile: ModelProfile
) -> None:
    directory = write_tiny_checkpoint(tmp_path / "window", family=ModelFamily.UNLIMITED_OCR)
    config = json.loads((directory / CONFIG_FILE).read_text())
    config["sliding_window"] = 256
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"sliding_window=256.*128-token window"):
        load(directory)


def test_flash_attention_2_is_refused_for_reference_sliding_window_attention(
    tiny_checkpoint: Path, profile: ModelProfile
) -> None:
    settings = EngineSettings(model_path=str(tiny_checkpoint), device="cpu", attention="flash_attention_2")
    if profile.reference_sliding_window:
        with pytest.raises(ValueError, match="cannot compute reference sliding-window attention"):
            load_model(settings)
    else:
        assert (
            resolve_attention("flash_attention_2", torch.device("cpu"), torch.float32) == "flash_attention_2"
        )
