"""Every variable the deployment reads is one the application reads, or documented in .env.example."""

from __future__ import annotations

from pathlib import Path

import pytest

from scriptorium.settings import env_variables
from tests.unit.deploy.deployment import (
    ALL_COMPOSE_FILES,
    ROOT,
    documented_compose_variables,
    load_compose,
    variables_in,
)

FILE_IDS = [str(path.relative_to(ROOT)) for path in ALL_COMPOSE_FILES]
# Read by the application's dependencies or the images, not by Scriptorium's settings.
PROCESS_VARIABLES = {
    "PROMETHEUS_MULTIPROC_DIR",
    "HF_TOKEN",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "MODEL_FAMILY",
    "MODEL_REPO",
    "MODEL_REVISION",
}
# Variables of third-party images (postgres, minio, grafana), documented by those images.
IMAGE_PREFIXES = ("POSTGRES_", "MINIO_", "GF_")


def _environment_names(path: Path) -> set[str]:
    names = set()
    for service in load_compose(path).get("services", {}).values():
        environment = service.get("environment", {})
        names |= set(environment) if isinstance(environment, dict) else {e.split("=")[0] for e in environment}
    return names


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=FILE_IDS)
def test_compose_sets_only_settings_the_application_reads(path: Path) -> None:
    known = set(env_variables())
    for name in _environment_names(path):
        if name.startswith("SCRIPTORIUM_"):
            assert name in known, f"{path.name} sets {name}, which no setting reads"
        else:
            third_party = name in PROCESS_VARIABLES or name.startswith(IMAGE_PREFIXES)
            assert third_party, f"{path.name}: who reads {name}?"


@pytest.mark.parametrize("path", ALL_COMPOSE_FILES, ids=FILE_IDS)
def test_every_compose_variable_is_documented_with_its_default(path: Path) -> None:
    settings = env_variables()
    documented = documented_compose_variables()
    for match in variables_in(path.read_text(encoding="utf-8")):
        name, default = match["name"], match["arg"] or ""
        if name.startswith("SCRIPTORIUM_"):
            assert name in settings, f"{path.name} interpolates {name}, which no setting reads"
            continue
        assert name in documented, f"document {name} in .env.example (docker compose only)"
        assert documented[name] == default, f"{name}: {documented[name]!r} in .env.example, {default!r} here"


def test_documented_compose_variables_are_used() -> None:
    used = {m["name"] for path in ALL_COMPOSE_FILES for m in variables_in(path.read_text(encoding="utf-8"))}
    unused = set(documented_compose_variables()) - used
    assert not unused, f".env.example documents compose variables nothing reads: {sorted(unused)}"


def test_documented_compose_variables_do_not_shadow_settings() -> None:
    assert not set(documented_compose_variables()) & set(env_variables())


def test_copying_env_example_keeps_compose_working() -> None:
    """Compose takes the container addresses from its own file even when .env has the local ones."""
    for name, service in load_compose(ROOT / "docker-compose.yml")["services"].items():
        environment = service.get("environment", {})
        if "SCRIPTORIUM_DB__URL" in environment:
            for key in ("SCRIPTORIUM_DB__URL", "SCRIPTORIUM_REDIS__URL", "SCRIPTORIUM_STORAGE__ENDPOINT"):
                assert "${" + key not in environment[key], f"{name}: {key} must not come from .env"
                assert "127.0.0.1" not in environment[key], name
