"""docker-compose.yml and its override files: valid Compose, and the fleet the product promises."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from scriptorium.model_families import MODEL_FAMILY_NAMES, ModelFamily
from scriptorium.settings import Settings
from tests.unit.deploy.deployment import (
    ALL_COMPOSE_FILES,
    COMPOSE_FILE,
    ROOT,
    compose_validator,
    duration_seconds,
    load_compose,
    services,
    variables_in,
    with_defaults,
)
from worker.engine.profiles import profile_of

FILE_IDS = [str(path.relative_to(ROOT)) for path in ALL_COMPOSE_FILES]
BUILT_IMAGE = re.compile(r"^scriptorium-[a-z-]+:")


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=FILE_IDS)
def test_compose_file_follows_the_compose_specification(path: Path) -> None:
    errors = sorted(compose_validator().iter_errors(load_compose(path)), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_rejects_what_compose_rejects() -> None:
    broken = copy.deepcopy(load_compose(COMPOSE_FILE))
    broken["services"]["api"]["comand"] = ["python"]
    broken["services"]["redis"]["healthcheck"]["interval"] = ["5s"]
    broken["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["gpus"] = 1
    paths = {tuple(error.absolute_path) for error in compose_validator().iter_errors(broken)}
    assert ("services", "api") in paths
    assert ("services", "redis", "healthcheck", "interval") in paths
    assert any(path[:2] == ("services", "worker-gpu") for path in paths)


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=FILE_IDS)
def test_every_variable_has_a_default(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    without_default = [m[0] for m in variables_in(text) if m["op"] not in (":-", "-")]
    assert not without_default, f"set these or give them defaults: {without_default}"
    with_defaults(load_compose(path))  # every reference resolves with an empty environment


def test_the_fleet_services_are_all_there() -> None:
    defined = services()
    expected = {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "migrate",
        "model",
        "api",
        "worker-cpu",
        "beat",
        "worker-gpu",
        "flower",
        "prometheus",
        "grafana",
    }
    assert expected <= set(defined)
    for name in ("flower", "prometheus", "grafana"):
        assert defined[name]["profiles"] == ["monitoring"]
    monitoring = {name for name, service in defined.items() if "profiles" in service}
    assert monitoring == {"flower", "prometheus", "grafana"}, "everything else starts by default"


def test_images_are_pinned_or_built_here() -> None:
    for name, service in services().items():
        image = service["image"]
        if BUILT_IMAGE.match(image):
            assert "build" in service, f"{name} uses a local image it does not build"
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned to a version"


def test_postgres_keeps_its_data_and_reports_health() -> None:
    postgres = services()["postgres"]
    assert postgres["image"].startswith("postgres:16.")
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_redis_is_a_durable_broker() -> None:
    redis = services()["redis"]
    assert redis["image"].startswith("redis:7.")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_minio_gets_its_bucket_once_it_is_healthy() -> None:
    defined = services()
    assert "healthcheck" in defined["minio"]
    init = defined["minio-init"]
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    script = init["volumes"][0].split(":")[0]
    assert (ROOT / script).is_file()
    # The bucket and the application's key are the ones the application is configured with.
    app = defined["api"]["environment"]
    for field in ("BUCKET", "ACCESS_KEY", "SECRET_KEY"):
        key = f"SCRIPTORIUM_STORAGE__{field}"
        assert init["environment"][key] == app[key]


def test_migrations_run_once_before_the_api_and_the_workers() -> None:
    defined = services()
    assert defined["migrate"]["restart"] == "no"
    # migrate also checks the bucket, so it runs once MinIO has it and the application's user
    assert defined["migrate"]["depends_on"]["minio-init"] == {"condition": "service_completed_successfully"}
    for name in ("api", "worker-cpu", "beat", "worker-gpu"):
        depends = defined[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name


def test_the_model_is_fetched_once_into_a_volume_the_workers_read() -> None:
    defined = services()
    model = defined["model"]
    assert model["restart"] == "no"
    assert model["volumes"] == ["models:/models"]
    assert "models" in load_compose(COMPOSE_FILE)["volumes"]
    model_path = Settings(_env_file=None).engine.model_path
    assert model["environment"]["SCRIPTORIUM_ENGINE__MODEL_PATH"] == model_path
    for name in ("worker-gpu", "worker-cpu"):
        assert defined[name]["volumes"] == ["models:/models:ro"], name
        assert defined[name]["depends_on"]["model"] == {"condition": "service_completed_successfully"}
        assert defined[name]["environment"]["SCRIPTORIUM_ENGINE__MODEL_PATH"] == model_path


def test_offline_hosts_bind_a_local_directory_instead_of_the_volume() -> None:
    resolved = with_defaults(load_compose(COMPOSE_FILE), {"MODELS_VOLUME": "/srv/models"})
    assert resolved["services"]["model"]["volumes"] == ["/srv/models:/models"]
    assert resolved["services"]["worker-gpu"]["volumes"] == ["/srv/models:/models:ro"]


def test_the_gpu_worker_holds_one_gpu_and_reports_ready_after_warm_up() -> None:
    worker = services()["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    command = worker["command"]
    ready_file = command[command.index("--ready-file") + 1]
    assert any(ready_file.startswith(f"{mount}/") for mount in worker["tmpfs"]), "must not outlive a restart"
    assert duration_seconds(worker["healthcheck"]["start_period"]) >= 600, "loading 6.7 GB takes a while"


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=[p.name for p in ALL_COMPOSE_FILES])
def test_worker_and_sweeper_healthchecks_test_liveness_not_a_file_written_once(path: Path) -> None:
    redis = Settings(_env_file=None).redis
    for name, service in services(path).items():
        command = service.get("command") or []
        if not isinstance(command, list) or "scriptorium.cli" not in command:
            continue
        kind = command[command.index("scriptorium.cli") + 1]
        if kind not in ("worker", "beat"):
            continue
        flag = "--ready-file" if kind == "worker" else "--liveness-file"
        liveness = command[command.index(flag) + 1]
        probe = service["healthcheck"]["test"]
        assert probe[:5] == ["CMD", "python", "-m", "scriptorium.cli", "worker-health"], name
        assert probe[5] == liveness, name
        max_age = float(probe[probe.index("--max-age-s") + 1])
        if kind == "worker":  # touched by the watchdog at every healthy check
            assert redis.watchdog_interval_s * 3 <= max_age < redis.liveness_timeout_s, name
        assert any(liveness.startswith(f"{mount}/") for mount in service["tmpfs"]), name


@pytest.mark.parametrize("name", ["worker-gpu", "worker-cpu"])
def test_workers_get_time_to_finish_their_page_on_stop(name: str) -> None:
    limits = Settings(_env_file=None).limits
    grace = duration_seconds(services()[name]["stop_grace_period"])
    assert grace > limits.page_hard_time_limit_s


def test_long_running_services_restart_and_one_shots_do_not() -> None:
    one_shots = {"migrate", "model", "minio-init"}
    for name, service in services().items():
        expected = "no" if name in one_shots else "unless-stopped"
        assert service.get("restart") == expected, name


def test_the_api_is_healthy_only_when_ready() -> None:
    api = services()["api"]
    probe = " ".join(api["healthcheck"]["test"])
    port = api["environment"]["SCRIPTORIUM_API__PORT"]
    assert f"http://127.0.0.1:{port}/readyz" in probe
    assert api["ports"] == [f"8000:{port}"]


def test_worker_metrics_are_collected_across_pool_processes() -> None:
    for name in ("worker-gpu", "worker-cpu"):
        worker = services()[name]
        # The directory must exist before Python starts (metrics open their files on import), and
        # be empty: a tmpfs mount point is both, on every start.
        assert worker["environment"]["PROMETHEUS_MULTIPROC_DIR"] in worker["tmpfs"], name


def test_bind_mounted_files_exist() -> None:
    for path in ALL_COMPOSE_FILES:
        for name, service in with_defaults(load_compose(path)).get("services", {}).items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (ROOT / source).exists(), f"{path.name} {name}: {source}"
            build = service.get("build")
            if isinstance(build, dict) and "dockerfile" in build:
                assert (ROOT / build["dockerfile"]).is_file(), f"{path.name} {name}: {build['dockerfile']}"


def _without_device(service: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(service)
    stripped["deploy"]["resources"]["reservations"]["devices"][0].pop("device_ids")
    return stripped


def test_extra_gpu_workers_are_copies_of_the_first_on_their_own_device() -> None:
    base = services()["worker-gpu"]
    extra = services(ROOT / "infra" / "compose" / "gpus-2.yml")
    assert extra, "gpus-2.yml defines the extra workers"
    for index, (name, worker) in enumerate(sorted(extra.items()), start=1):
        assert name == f"worker-gpu-{index}"
        assert worker["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == [str(index)]
        assert _without_device(worker) == _without_device(base), f"{name} drifted from worker-gpu"


def test_the_cpu_override_moves_the_engine_to_the_cpu_and_keeps_timings_consistent() -> None:
    override = services(ROOT / "infra" / "compose" / "cpu.yml")
    worker = override["worker-gpu"]
    assert worker["deploy"]["resources"]["reservations"]["devices"] == []
    assert worker["environment"]["SCRIPTORIUM_ENGINE__DEVICE"] == "cpu"
    assert worker["build"]["args"]["TORCH_INDEX_URL"].endswith("/cpu")
    assert override["model"]["image"] == worker["image"] != services()["worker-gpu"]["image"]
    timeouts = {
        name: service["environment"]["SCRIPTORIUM_REDIS__VISIBILITY_TIMEOUT_S"]
        for name, service in override.items()
        if "environment" in service and name != "model"
    }
    broker_clients = {"api", "worker-cpu", "beat", "worker-gpu", "flower"}
    assert set(timeouts) == broker_clients, "every broker client needs the same visibility timeout"
    assert len(set(timeouts.values())) == 1
    hard_limit = int(worker["environment"]["SCRIPTORIUM_LIMITS__PAGE_HARD_TIME_LIMIT_S"])
    assert int(next(iter(timeouts.values()))) > 2 * hard_limit
    assert duration_seconds(worker["stop_grace_period"]) > hard_limit


def test_the_two_models_override_adds_an_unlimited_ocr_worker_on_its_own_gpu_and_checkpoint() -> None:
    base = services()
    override = services(ROOT / "infra" / "compose" / "two-models.yml")
    worker, fetch = override["worker-gpu-unlimited"], override["model-unlimited"]
    unlimited = profile_of(ModelFamily.UNLIMITED_OCR)

    base_device = base["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"]
    assert device == ["1"] != base_device, "each family on a GPU of its own"
    assert worker["environment"]["SCRIPTORIUM_ENGINE__FAMILY"] == unlimited.family.value
    assert worker["environment"]["SCRIPTORIUM_ENGINE__MODEL_PATH"] == unlimited.default_model_dir
    assert worker["command"] == base["worker-gpu"]["command"], "--queues gpu: the queue of its family"

    assert fetch["command"] == base["model"]["command"] and fetch["restart"] == "no"
    assert fetch["environment"]["MODEL_FAMILY"] == unlimited.family.value
    assert fetch["environment"]["MODEL_REPO"] == unlimited.hub_id
    assert fetch["environment"]["SCRIPTORIUM_ENGINE__MODEL_PATH"] == unlimited.default_model_dir
    assert fetch["volumes"] == ["models-unlimited:/models"]
    assert worker["volumes"] == ["models-unlimited:/models:ro"]
    assert base["model"]["volumes"] != fetch["volumes"], "its own checkpoint volume"
    assert "models-unlimited" in load_compose(ROOT / "infra" / "compose" / "two-models.yml")["volumes"]
    assert worker["depends_on"]["model-unlimited"] == {"condition": "service_completed_successfully"}

    comparable = {"environment", "volumes", "depends_on", "deploy"}
    same = {key: value for key, value in worker.items() if key not in comparable}
    assert same == {key: value for key, value in base["worker-gpu"].items() if key not in comparable}
    assert _without_device(worker)["deploy"] == _without_device(base["worker-gpu"])["deploy"]
    shared = {
        k: v for k, v in base["worker-gpu"]["environment"].items() if k != "SCRIPTORIUM_ENGINE__MODEL_PATH"
    }
    assert shared.items() <= worker["environment"].items(), "the same fleet settings as worker-gpu"

    for name in ("api", "worker-cpu", "beat", "worker-gpu", "worker-gpu-unlimited"):
        served = json.loads(override[name]["environment"]["SCRIPTORIUM_MODELS__SERVED"])
        assert sorted(served) == sorted(MODEL_FAMILY_NAMES), name
