"""The containers start the same entry points the test suite starts.

The integration and end-to-end tests run the fleet's real processes through
``tests.support.fleet``; every compose service and every image that runs ``scriptorium`` must
run one of those invocations (same sub-command, same queues), so what CI exercises is what a
GPU host runs. ``migrate`` is exercised here, with the exact command of the compose service.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scriptorium.cli import cli
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.queueing import gpu_queue
from tests.support import fleet as fleet_module
from tests.support.fleet import SCRIPTORIUM, Fleet, ManagedProcess
from tests.support.services import S3Server, postgres_database
from tests.unit.deploy.deployment import (
    COMPOSE_FILE,
    DOCKERFILES,
    OVERRIDE_FILES,
    ROOT,
    parse_dockerfile,
    services,
)
from worker.main import resolve_queues

MODULE_PREFIX = ["python", "-m", "scriptorium.cli"]
Signature = tuple[str, ...]


def signature(arguments: list[str]) -> Signature:
    """What an invocation runs: the sub-command, and for workers the queues it consumes."""
    root = cli.make_context("scriptorium", list(arguments), resilient_parsing=True)
    name, *rest = arguments
    command = cli.get_command(root, name)
    assert command is not None, f"scriptorium has no command {name!r}"
    parsed = command.make_context(name, rest, parent=root)  # raises on options the command lacks
    if name == "worker":
        return ("worker", *sorted(resolve_queues(parsed.params["queues"].split(","), DEFAULT_MODEL_FAMILY)))
    return (name,)


@dataclass
class RecordingFleet(Fleet):
    """Starts nothing; remembers the argv each ``start_*`` helper would run."""

    started: list[list[str]] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> ManagedProcess:
        self.started.append(argv)
        return ManagedProcess(name, argv, {}, self.workdir / f"{name}.log")


@pytest.fixture(scope="module")
def tested_signatures(tmp_path_factory: pytest.TempPathFactory) -> set[Signature]:
    recording = RecordingFleet(env={}, workdir=tmp_path_factory.mktemp("fleet"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fleet_module, "wait_for", lambda *_, **__: True)
        recording.start_api()
        recording.start_cpu_worker()
        recording.start_gpu_worker(real_engine=True, wait_ready=False)
        recording.start_beat()
    assert all(argv[: len(SCRIPTORIUM)] == SCRIPTORIUM for argv in recording.started)
    return {signature(argv[len(SCRIPTORIUM) :]) for argv in recording.started} | {("migrate",)}


def scriptorium_commands(path: Path = COMPOSE_FILE) -> Iterator[tuple[str, list[str]]]:
    for name, service in services(path).items():
        command = service.get("command")
        if isinstance(command, list) and command[:3] == MODULE_PREFIX:
            yield name, command[3:]


def test_every_service_running_scriptorium_runs_what_the_tests_run(tested_signatures: set[Signature]) -> None:
    found = dict(scriptorium_commands())
    assert set(found) == {"migrate", "api", "worker-cpu", "beat", "worker-gpu"}
    for name, arguments in found.items():
        assert signature(arguments) in tested_signatures, f"{name} runs {arguments}, which no test starts"
    assert signature(found["worker-gpu"]) == ("worker", gpu_queue(DEFAULT_MODEL_FAMILY))
    assert signature(found["worker-cpu"]) == ("worker", "scriptorium.cpu")


@pytest.mark.parametrize("path", OVERRIDE_FILES, ids=[p.name for p in OVERRIDE_FILES])
def test_override_files_run_what_the_tests_run(path: Path, tested_signatures: set[Signature]) -> None:
    for name, arguments in scriptorium_commands(path):
        assert signature(arguments) in tested_signatures, f"{path.name} {name} runs {arguments}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_image_defaults_run_what_the_tests_run(path: Path, tested_signatures: set[Signature]) -> None:
    dockerfile = parse_dockerfile(path)
    for stage in dockerfile.stages:
        commands = [i.exec_form() for i in stage.all("CMD")]
        for command in commands:
            if command[:3] == MODULE_PREFIX:
                assert signature(command[3:]) in tested_signatures, f"{path.name} {stage.name}: {command}"


def test_services_without_scriptorium_commands_run_files_that_ship() -> None:
    defined = services()
    model = defined["model"]["command"]
    assert model[0] == "python"
    script = model[1]
    assert (ROOT / script).is_file()
    gpu = parse_dockerfile(ROOT / "infra" / "docker" / "worker-gpu.Dockerfile")
    copies = [i.arguments.split() for i in gpu.stage("worker-gpu").all("COPY")]
    assert [script, f"./{script}"] in copies, "the GPU image ships the model fetch script at the same path"
    flower = defined["flower"]["command"]
    assert flower[:3] == ["celery", "--app", "flower_app"]


@pytest.mark.integration
def test_the_compose_migrate_command_brings_a_fresh_database_to_head(s3_server: S3Server) -> None:
    command = dict(scriptorium_commands())["migrate"]
    with postgres_database() as url:
        environment = {
            "PATH": "/usr/bin:/bin",
            "SCRIPTORIUM_DB__URL": url,
            "SCRIPTORIUM_STORAGE__ENDPOINT": s3_server.endpoint,
            "SCRIPTORIUM_STORAGE__ACCESS_KEY": s3_server.access_key,
            "SCRIPTORIUM_STORAGE__SECRET_KEY": s3_server.secret_key,
            "SCRIPTORIUM_STORAGE__BUCKET": "migrate-entrypoint",
            "PYTHONPATH": str(ROOT),
        }
        completed = subprocess.run(
            [sys.executable, "-m", "scriptorium.cli", *command],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        engine = create_engine(url)
        try:
            with engine.connect() as connection:
                applied = connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                tables = set(connection.execute(text("SELECT tablename FROM pg_tables")).scalars())
        finally:
            engine.dispose()
    heads = subprocess.run(
        [sys.executable, "-m", "alembic", "heads"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    ).stdout
    assert applied in heads
    assert {"documents", "pages", "tenants"} <= tables
