"""The GPU comparison's parts that run without a GPU: arguments, the official-code adapter, the
random-weight writer, our side on the tiny checkpoint, and the shell scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import gpu_compare, official_deepseek
from bench.official_deepseek import (
    OFFICIAL_AUTO_MAP,
    OFFICIAL_CODE_FILES,
    OfficialCodeMissing,
    fixed_length,
    locate_official_code,
    stage_official_code,
)
from scriptorium.settings import EngineSettings
from worker.engine.deepseek.loader import load_model

ROOT = Path(__file__).resolve().parents[3]


def _official_checkout(directory: Path, *, without: tuple[str, ...] = ()) -> Path:
    """A stand-in for a checkout of the model repository: the file names only, never its code."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in OFFICIAL_CODE_FILES:
        if name not in without:
            (directory / name).write_text(f"# stand-in for {name}\n", encoding="utf-8")
    return directory


def test_a_missing_official_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OfficialCodeMissing) as caught:
        locate_official_code(tmp_path / "nowhere")

    assert "does not exist" in str(caught.value)
    assert "git clone https://huggingface.co/deepseek-ai/DeepSeek-OCR" in str(caught.value)


def test_a_directory_without_the_model_code_names_what_is_missing(tmp_path: Path) -> None:
    checkout = _official_checkout(tmp_path / "repo", without=("deepencoder.py", "conversation.py"))

    with pytest.raises(OfficialCodeMissing) as caught:
        locate_official_code(checkout)

    assert "conversation.py, deepencoder.py missing" in str(caught.value)


def test_the_comparison_refuses_to_start_without_the_official_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        gpu_compare.parse_args(["--official", str(tmp_path / "nowhere")])

    assert stopped.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_arguments_of_the_comparison(tmp_path: Path) -> None:
    checkout = _official_checkout(tmp_path / "repo")

    args = gpu_compare.parse_args(["--official", str(checkout), "--modes", "tiny,gundam", "--size", "tiny"])

    assert (args.official, args.modes, args.size) == (checkout, ["tiny", "gundam"], "tiny")
    assert (args.pages, args.new_tokens, args.limit_s) == (3, 256, 440.0)
    with pytest.raises(SystemExit):
        gpu_compare.parse_args(["--official", str(checkout), "--modes", "huge"])
    with pytest.raises(SystemExit):
        gpu_compare.parse_args(["--official", str(checkout), "--new-tokens", "0"])


def test_arguments_of_the_official_runner(tmp_path: Path) -> None:
    args = official_deepseek.parse_args(["--checkpoint", str(tmp_path), "--pages", "a.png", "b.png"])

    assert args.modes == ["tiny", "small", "base", "large", "gundam"]
    assert (args.attention, args.new_tokens, args.pages) == ("eager", 512, [Path("a.png"), Path("b.png")])


def test_the_official_modes_are_the_infer_arguments_of_the_official_script() -> None:
    modes = official_deepseek.OFFICIAL_MODES
    assert (modes["gundam"].base_size, modes["gundam"].image_size, modes["gundam"].crop_mode) == (
        1024,
        640,
        True,
    )
    assert [(mode.base_size, mode.crop_mode) for name, mode in modes.items() if name != "gundam"] == [
        (512, False),
        (640, False),
        (1024, False),
        (1280, False),
    ]


def test_the_random_checkpoint_is_staged_beside_the_official_code_and_still_loads(tmp_path: Path) -> None:
    checkpoint = gpu_compare.write_checkpoint_of_size(tmp_path / "checkpoint", "tiny")
    checkout = _official_checkout(tmp_path / "repo")
    published_map = {"AutoConfig": "modeling_deepseekocr.X", "AutoModel": "modeling_deepseekocr.Y"}
    (checkout / "config.json").write_text(json.dumps({"auto_map": published_map}), encoding="utf-8")

    stage_official_code(checkout, checkpoint)

    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    assert config["auto_map"] == published_map
    for name in OFFICIAL_CODE_FILES:
        assert (checkpoint / name).read_text(encoding="utf-8") == f"# stand-in for {name}\n"
    loaded = load_model(EngineSettings(model_path=str(checkpoint), device="cpu", dtype="bfloat16"))
    assert loaded.dtype == torch.bfloat16


def test_without_a_published_config_the_auto_classes_point_at_the_official_module(tmp_path: Path) -> None:
    checkpoint = gpu_compare.write_checkpoint_of_size(tmp_path / "checkpoint", "tiny")

    stage_official_code(_official_checkout(tmp_path / "repo"), checkpoint)

    assert (
        json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))["auto_map"] == OFFICIAL_AUTO_MAP
    )


def test_the_generate_wrapper_forces_the_output_length_and_records_it() -> None:
    calls: list[dict[str, Any]] = []

    def generate(input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return torch.cat([input_ids, torch.zeros((1, kwargs["max_new_tokens"]), dtype=torch.long)], dim=1)

    lengths: list[tuple[int, int]] = []
    wrapped = fixed_length(generate, lengths)
    wrapped.new_tokens = 7  # type: ignore[attr-defined]

    wrapped(torch.ones((1, 40), dtype=torch.long), max_new_tokens=8192, no_repeat_ngram_size=35)

    assert calls == [{"max_new_tokens": 7, "min_new_tokens": 7, "no_repeat_ngram_size": 35}]
    assert lengths == [(40, 7)]


def test_only_the_event_lines_of_the_official_run_are_read() -> None:
    output = "\n".join(
        [
            '{"event": "loaded", "seconds": 1.5}',
            "=====================",
            "BASE:  torch.Size([1, 256, 1280])",
            '{"event": "page", "mode": "base"',
            '{"event": "page", "mode": "base", "seconds": 2.0}',
        ]
    )

    assert gpu_compare.read_events(output) == [
        {"event": "loaded", "seconds": 1.5},
        {"event": "page", "mode": "base", "seconds": 2.0},
    ]


def test_the_official_process_sees_its_own_packages_first_and_a_scratch_model_cache(tmp_path: Path) -> None:
    environment = gpu_compare.official_environment(tmp_path / "site", tmp_path / "scratch")

    assert environment["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "site"), str(ROOT)]
    assert environment["HF_HOME"] == str(tmp_path / "scratch" / "hf-home")
    assert environment["HF_HUB_OFFLINE"] == environment["TRANSFORMERS_OFFLINE"] == "1"


def test_our_side_reads_the_same_pages_batched_and_one_by_one(tmp_path: Path) -> None:
    checkpoint = gpu_compare.write_checkpoint_of_size(tmp_path / "checkpoint", "tiny")
    pages = gpu_compare.write_pages(tmp_path / "pages", 2)
    args = Namespace(device="cpu", modes=["tiny"], new_tokens=3)

    results = gpu_compare.run_ours(checkpoint, pages, args, until=float("inf"))

    batched, alone = results["tiny"]["batched"], results["tiny"]["one by one"]
    assert (batched.pages, alone.pages) == (2, 2)
    assert batched.seconds > 0 and alone.seconds > 0
    assert batched.prompt_tokens == alone.prompt_tokens and len(set(batched.prompt_tokens)) == 1


def test_the_comparison_script_stops_early_without_the_official_code(tmp_path: Path) -> None:
    completed = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_engine.sh"), "--compare-official", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 2
    assert "modeling_deepseekocr.py" in completed.stderr


@pytest.mark.parametrize("script", ["gpu_engine.sh", "gpu_wheels.sh"])
def test_the_bench_scripts_pass_shellcheck(script: str) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    completed = subprocess.run(
        [str(shellcheck), str(ROOT / "bench" / script)], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stdout
