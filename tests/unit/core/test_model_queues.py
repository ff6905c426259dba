"""Queues per model family: how an OCR message finds its queue, and which queue a GPU worker
consumes (the family it serves, known before Celery starts and without torch)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from scriptorium.messages import OCR_TASK, Message, Outbox
from scriptorium.model_families import ModelFamily
from scriptorium.queueing import CPU_QUEUE, GPU_QUEUES, gpu_queue, queue_of
from scriptorium.settings import EngineSettings, LimitsSettings, Settings
from worker.engine.profiles import UnknownCheckpoint, profile_of
from worker.main import checkpoint_family, resolve_queues, serves_gpu

ROOT = Path(__file__).resolve().parents[3]


def _published_config(directory: Path, family: ModelFamily) -> Path:
    profile = profile_of(family)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": min(profile.config_model_types),
        "architectures": sorted(profile.config_architectures),
    }
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _settings(**engine: object) -> Settings:
    return Settings(_env_file=None, engine=EngineSettings.model_validate(engine))  # type: ignore[call-arg]


def test_each_family_has_a_queue_of_its_own() -> None:
    assert GPU_QUEUES == ("scriptorium.gpu.deepseek-ocr", "scriptorium.gpu.unlimited-ocr")
    assert CPU_QUEUE not in GPU_QUEUES
    with pytest.raises(ValueError, match="not a valid ModelFamily"):
        gpu_queue("tesseract")


def test_an_ocr_message_goes_to_its_family_s_queue_and_other_tasks_follow_their_routes() -> None:
    outbox = Outbox()
    outbox.ocr([(uuid.uuid4(), 1)], model="unlimited-ocr")
    outbox.prepare(uuid.uuid4(), None)
    ocr, prepare = outbox.take()
    assert ocr.kwargs["model"] == ocr.model == "unlimited-ocr"
    assert queue_of(ocr) == "scriptorium.gpu.unlimited-ocr"
    assert queue_of(prepare) is None
    with pytest.raises(ValueError, match="must name its model family"):
        queue_of(Message(OCR_TASK, {"pages": []}))


def test_gpu_means_the_queue_of_the_family_served() -> None:
    assert serves_gpu(["gpu"]) and serves_gpu(["cpu", "scriptorium.gpu.unlimited-ocr"])
    assert not serves_gpu(["cpu"])
    assert resolve_queues(["gpu"], ModelFamily.UNLIMITED_OCR) == ["scriptorium.gpu.unlimited-ocr"]
    assert resolve_queues(["cpu", "gpu"], ModelFamily.DEEPSEEK_OCR) == [
        CPU_QUEUE,
        "scriptorium.gpu.deepseek-ocr",
    ]
    assert resolve_queues(["cpu"]) == [CPU_QUEUE]
    with pytest.raises(ValueError, match="another family's pages"):
        resolve_queues(["scriptorium.gpu.deepseek-ocr"], ModelFamily.UNLIMITED_OCR)
    with pytest.raises(ValueError, match="needs the model family"):
        resolve_queues(["gpu"])


@pytest.mark.parametrize("family", list(ModelFamily))
def test_the_family_is_read_from_the_checkpoint_when_not_set(tmp_path: Path, family: ModelFamily) -> None:
    checkpoint = _published_config(tmp_path / "model", family)
    assert checkpoint_family(_settings(model_path=str(checkpoint))) is family


def test_a_set_family_wins_and_an_unknown_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = _published_config(tmp_path / "model", ModelFamily.DEEPSEEK_OCR)
    pinned = _settings(model_path=str(checkpoint), family="unlimited-ocr")
    assert checkpoint_family(pinned) is ModelFamily.UNLIMITED_OCR  # the engine then refuses the checkpoint
    (checkpoint / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UnknownCheckpoint, match="not a checkpoint of a served family"):
        checkpoint_family(_settings(model_path=str(checkpoint)))
    (checkpoint / "config.json").unlink()
    with pytest.raises(UnknownCheckpoint, match=r"not a readable config\.json"):
        checkpoint_family(_settings(model_path=str(checkpoint)))


def test_telling_the_family_loads_no_torch(tmp_path: Path) -> None:
    checkpoint = _published_config(tmp_path / "model", ModelFamily.UNLIMITED_OCR)
    probe = (
        "import sys\n"
        "from scriptorium.settings import EngineSettings, Settings\n"
        "from worker.main import checkpoint_family\n"
        f"settings = Settings(_env_file=None, engine=EngineSettings(model_path={str(checkpoint)!r}))\n"
        "print(checkpoint_family(settings).value, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["unlimited-ocr", "False"]


def test_a_worker_is_gone_only_after_several_missed_heartbeats() -> None:
    assert LimitsSettings().gpu_worker_gone_after_s >= 2 * LimitsSettings().gpu_heartbeat_s
    with pytest.raises(ValidationError, match="at least twice"):
        LimitsSettings(gpu_heartbeat_s=10, gpu_worker_gone_after_s=15)
