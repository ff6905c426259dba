"""The Dockerfiles: hadolint-clean, pinned, multi-stage, non-root, no secrets, the right torch."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.unit.deploy.deployment import (
    DOCKERFILES,
    ROOT,
    copy_sources,
    dockerignore_patterns,
    excluded_from_context,
    parse_dockerfile,
)

IDS = [path.name for path in DOCKERFILES]
CONSTRAINTS = ROOT / "infra" / "docker" / "constraints.txt"
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|ACCESS_KEY|PRIVATE)", re.IGNORECASE)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is missing: pip install -e '.[dev]'")
    return found


def test_the_three_images_exist() -> None:
    assert {path.name for path in DOCKERFILES} == {
        "api.Dockerfile",
        "worker-cpu.Dockerfile",
        "worker-gpu.Dockerfile",
    }


def test_hadolint_finds_nothing() -> None:
    config = ROOT / "infra" / "docker" / ".hadolint.yaml"
    completed = subprocess.run(
        [_tool("hadolint"), "--config", str(config), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_hadolint_would_catch_an_unpinned_root_image(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    completed = subprocess.run(
        [_tool("hadolint"), "--config", str(ROOT / "infra" / "docker" / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode != 0
    assert {"DL3007", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", completed.stdout))


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_base_images_are_pinned_to_versions(path: Path) -> None:
    dockerfile = parse_dockerfile(path)
    local_stages = {stage.name for stage in dockerfile.stages if stage.name}
    for stage in dockerfile.stages:
        image = dockerfile.base_image(stage)
        if image in local_stages:
            continue
        name, _, tag = image.rpartition(":")
        assert name, f"{path.name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{path.name}: {image} is not pinned"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_images_are_multi_stage_and_run_as_a_numeric_non_root_user(path: Path) -> None:
    dockerfile = parse_dockerfile(path)
    assert len(dockerfile.stages) >= 2, "build tools stay in a build stage"
    for stage in dockerfile.stages:
        if stage.name == "build":
            continue
        users = stage.all("USER")
        assert users, f"{path.name} {stage.name}: no USER"
        uid = users[-1].arguments.split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{path.name} {stage.name} runs as {users[-1].arguments}"
    copies = [i.arguments for stage in dockerfile.stages for i in stage.all("COPY")]
    assert "--from=build /opt/venv /opt/venv" in copies, "the runtime stage takes the built environment"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_no_secret_is_baked_into_an_image(path: Path) -> None:
    dockerfile = parse_dockerfile(path)
    for stage in dockerfile.stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments):
                assert not SECRET_NAME.search(name), f"{path.name}: {instruction.keyword} {name}"
    sources = [source for stage in dockerfile.stages for i in stage.all("COPY") for source in copy_sources(i)]
    assert not [source for source in sources if Path(source).name == ".env"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_copied_files_are_in_the_build_context(path: Path) -> None:
    patterns = dockerignore_patterns()
    for stage in parse_dockerfile(path).stages:
        for instruction in stage.all("COPY"):
            if "--from=" in instruction.arguments:
                continue
            for source in copy_sources(instruction):
                assert (ROOT / source).exists(), f"{path.name}: COPY {source} does not exist"
                assert not excluded_from_context(source, patterns), f"{path.name}: {source} is ignored"


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    patterns = dockerignore_patterns()
    for path in (".env", ".venv/bin/python", ".git/config", "tests/conftest.py", "api/__pycache__/app.pyc"):
        assert excluded_from_context(path, patterns), path
    for path in ("pyproject.toml", "scriptorium/settings.py", "migrations/env.py", "alembic.ini"):
        assert not excluded_from_context(path, patterns), path


def _installs(path: Path) -> str:
    return "\n".join(run for run in parse_dockerfile(path).runs() if "pip install" in run)


def test_the_api_image_carries_no_torch() -> None:
    for name in ("api.Dockerfile", "worker-cpu.Dockerfile"):
        installs = _installs(ROOT / "infra" / "docker" / name)
        assert "torch" not in installs and "[engine]" not in installs, name
        assert "--constraint constraints.txt ." in installs, name


def test_the_gpu_image_is_cuda_with_pinned_torch_and_transformers() -> None:
    path = ROOT / "infra" / "docker" / "worker-gpu.Dockerfile"
    dockerfile = parse_dockerfile(path)
    assert dockerfile.base_image(dockerfile.final).startswith("nvidia/cuda:13.")
    installs = _installs(path)
    assert "torch==2.13.0" in installs
    assert '".[engine]"' in installs
    pins = _constraints()
    assert pins["torch"] == "2.13.0"
    assert pins["transformers"] == "5.23.0"


def _constraints() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def _runtime_closure() -> set[str]:
    """Every distribution the installed project needs at run time, the engine extra included."""
    environment = {"extra": ""}
    seen: set[str] = set()
    pending: list[tuple[str, set[str]]] = [("scriptorium", {"engine"})]
    while pending:
        name, extras = pending.pop()
        distribution = importlib.metadata.distribution(name)
        for raw in distribution.requires or []:
            requirement = Requirement(raw)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in ["", *extras]
            )
            key = canonicalize_name(requirement.name)
            if wanted and (key not in seen or requirement.extras):
                seen.add(key)
                pending.append((requirement.name, set(requirement.extras)))
    return seen


def test_every_runtime_dependency_is_pinned_to_a_version_the_project_accepts() -> None:
    pins = _constraints()
    missing = _runtime_closure() - set(pins)
    assert not missing, f"add exact pins to {CONSTRAINTS.name}: {sorted(missing)}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["engine"]]
    for raw in declared:
        requirement = Requirement(raw)
        pinned = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(Version(pinned), prereleases=True), f"{pinned} breaks {raw}"


def test_the_minio_init_script_passes_shellcheck() -> None:
    completed = subprocess.run(
        [_tool("shellcheck"), "--shell=sh", str(ROOT / "infra" / "minio" / "init.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout
