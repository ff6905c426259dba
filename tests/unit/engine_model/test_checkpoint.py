from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

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
from worker.engine.deepseek.loader import LoadedModel, load_model
from worker.engine.deepseek.revision import checkpoint_revision
from worker.engine.deepseek.tiny_checkpoint import TINY_ARCHITECTURE, write_tiny_checkpoint


def copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def load(directory: Path) -> LoadedModel:
    return load_model(EngineSettings(model_path=str(directory), device="cpu"))


def test_tiny_checkpoint_has_the_published_layout(tiny_checkpoint: Path) -> None:
    files = sorted(path.name for path in tiny_checkpoint.iterdir())
    assert {CONFIG_FILE, TOKENIZER_FILE, "tokenizer_config.json", WEIGHTS_FILE, WEIGHTS_INDEX_FILE} <= set(
        files
    )
    config = json.loads((tiny_checkpoint / CONFIG_FILE).read_text())
    assert config["model_type"] == "deepseek_vl_v2"
    assert {"language_config", "vision_config", "projector_config"} <= set(config)
    names = tensor_names(tiny_checkpoint / WEIGHTS_FILE)
    assert names == set(original_tensor_shapes(TINY_ARCHITECTURE))
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


def test_the_loaded_model_serves_the_adapted_config(tiny_model: LoadedModel) -> None:
    text = tiny_model.model.config.text_config
    assert text.sliding_window >= 8192
    assert set(text.layer_types) == {"full_attention"}
    assert (tiny_model.dtype, tiny_model.device.type, tiny_model.attention) == (torch.float32, "cpu", "sdpa")


def test_revision_is_stable_and_tracks_content(
    tmp_path: Path, tiny_checkpoint: Path, tiny_model: LoadedModel
) -> None:
    again = write_tiny_checkpoint(tmp_path / "again", seed=0)
    other_seed = write_tiny_checkpoint(tmp_path / "other", seed=1)
    files = inspect_checkpoint(tiny_checkpoint)

    assert tiny_model.revision == checkpoint_revision(files)
    assert checkpoint_revision(inspect_checkpoint(again)) == tiny_model.revision
    assert (
        checkpoint_revision(inspect_checkpoint(other_seed)) != tiny_model.revision
    )  # same shapes, other values
    config = json.loads((again / CONFIG_FILE).read_text())
    config["rope_theta"] = 20000.0
    (again / CONFIG_FILE).write_text(json.dumps(config))
    assert checkpoint_revision(inspect_checkpoint(again)) != tiny_model.revision


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
