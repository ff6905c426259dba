"""infra/model/fetch_model.py: the one-shot `model` service, on a real tiny checkpoint."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from scriptorium.model_families import ModelFamily
from tests.unit.deploy.deployment import ROOT
from worker.engine.deepseek.checkpoint import HUB_DOWNLOAD_PATTERNS, CheckpointError, inspect_checkpoint

SCRIPT = ROOT / "infra" / "model" / "fetch_model.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fetch = _load_script()


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in the published on-disk layout (tiny random weights)."""
    from worker.engine.deepseek.tiny_checkpoint import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("hub") / "DeepSeek-OCR")


class FakeHub:
    """Stands in for snapshot_download: copies the published files into ``local_dir``."""

    def __init__(self, source: Path, *, fail: bool = False) -> None:
        self.source = source
        self.fail = fail
        self.calls: list[dict[str, object]] = []

    def __call__(self, *, repo_id: str, revision: str, local_dir: str, allow_patterns: list[str]) -> object:
        call: dict[str, object] = {
            "repo_id": repo_id,
            "revision": revision,
            "local_dir": local_dir,
            "patterns": allow_patterns,
        }
        self.calls.append(call)
        target = Path(local_dir)
        copied = sorted(self.source.iterdir())
        for index, path in enumerate(copied):
            if self.fail and index == len(copied) // 2:
                raise ConnectionError("the network went away")
            shutil.copy2(path, target / path.name)
        return str(target)


def test_a_missing_checkpoint_is_downloaded_checked_and_put_in_place(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "models" / "DeepSeek-OCR"
    hub = FakeHub(published)
    message = fetch.fetch_model(target, repo="deepseek-ai/DeepSeek-OCR", revision="abc123", download=hub)
    assert "downloaded deepseek-ai/DeepSeek-OCR@abc123" in message
    assert hub.calls == [
        {
            "repo_id": "deepseek-ai/DeepSeek-OCR",
            "revision": "abc123",
            "local_dir": str(fetch.partial_directory(target)),
            "patterns": list(HUB_DOWNLOAD_PATTERNS),
        }
    ]
    inspect_checkpoint(target)
    assert not fetch.partial_directory(target).exists()


def test_a_present_checkpoint_is_left_alone(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "DeepSeek-OCR"
    shutil.copytree(published, target)
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    hub = FakeHub(published)
    message = fetch.fetch_model(target, repo="r/m", revision="main", download=hub, offline=True)
    assert "nothing to download" in message
    assert hub.calls == []
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_an_interrupted_download_leaves_no_half_checkpoint(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "DeepSeek-OCR"
    with pytest.raises(CheckpointError, match="the network went away"):
        fetch.fetch_model(target, repo="r/m", revision="main", download=FakeHub(published, fail=True))
    assert not target.exists()
    assert any(fetch.partial_directory(target).iterdir()), "kept so the next run resumes"
    fetch.fetch_model(target, repo="r/m", revision="main", download=FakeHub(published))
    inspect_checkpoint(target)


def test_air_gapped_hosts_get_told_where_to_put_the_files(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "DeepSeek-OCR"
    hub = FakeHub(published)
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE"):
        fetch.fetch_model(target, repo="r/m", revision="main", download=hub, offline=True)
    assert hub.calls == []


def test_a_broken_directory_is_reported_not_overwritten(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "DeepSeek-OCR"
    target.mkdir()
    (target / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing"):
        fetch.fetch_model(target, repo="r/m", revision="main", download=FakeHub(published))
    assert [p.name for p in target.iterdir()] == ["config.json"]


def test_an_empty_directory_counts_as_missing(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "DeepSeek-OCR"
    target.mkdir()
    fetch.fetch_model(target, repo="r/m", revision="main", download=FakeHub(published))
    inspect_checkpoint(target)


def test_the_command_line_reads_the_compose_environment(
    tmp_path: Path, published: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "DeepSeek-OCR"
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__MODEL_PATH", str(target))
    monkeypatch.setenv("MODEL_REVISION", "v1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch.main([]) == 1
    assert f"no checkpoint at {target}" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    hub = FakeHub(published)
    monkeypatch.setattr(fetch, "_snapshot_download", hub)
    assert fetch.main(["--repo", "r/m"]) == 0
    assert "downloaded r/m@v1" in capsys.readouterr().out
    assert [call["revision"] for call in hub.calls] == ["v1"]
    assert fetch.main([]) == 0
    assert "nothing to download" in capsys.readouterr().out


def test_either_family_is_fetched_from_its_published_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from worker.engine.deepseek.tiny_checkpoint import write_tiny_checkpoint

    unlimited = write_tiny_checkpoint(tmp_path / "hub" / "Unlimited-OCR", family=ModelFamily.UNLIMITED_OCR)
    target = tmp_path / "models" / "Unlimited-OCR"
    hub = FakeHub(unlimited)
    monkeypatch.setattr(fetch, "_snapshot_download", hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("MODEL_FAMILY", "unlimited-ocr")
    assert fetch.main(["--target", str(target)]) == 0
    assert [call["repo_id"] for call in hub.calls] == ["baidu/Unlimited-OCR"]
    assert "downloaded baidu/Unlimited-OCR@main" in capsys.readouterr().out
    assert fetch.main(["--target", str(target), "--family", "deepseek-ocr"]) == 1  # the wrong family is there
    assert "holds a unlimited-ocr checkpoint, not deepseek-ocr" in capsys.readouterr().err


def test_a_download_of_the_wrong_family_is_not_put_in_place(tmp_path: Path, published: Path) -> None:
    target = tmp_path / "Unlimited-OCR"
    with pytest.raises(CheckpointError, match="holds a deepseek-ocr checkpoint, not unlimited-ocr"):
        fetch.fetch_model(
            target, repo="r/m", revision="main", download=FakeHub(published), family=ModelFamily.UNLIMITED_OCR
        )
    assert not target.exists()
