"""Every command and group of ``scriptorium`` answers ``--help``, without loading what it runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import click
import pytest
from click.testing import CliRunner

from scriptorium.acceptance import DocumentTask
from scriptorium.cli import cli
from scriptorium.cli.remote import DOCUMENT_TASKS

ROOT = Path(__file__).resolve().parents[3]
EXPECTED = {
    (),
    ("api",),
    ("worker",),
    ("worker-health",),
    ("beat",),
    ("migrate",),
    ("openapi",),
    ("tenant",),
    ("tenant", "create"),
    ("tenant", "quota"),
    ("tenant", "model"),
    ("tenant", "usage"),
    ("tenant", "key"),
    ("tenant", "key", "create"),
    ("tenant", "key", "list"),
    ("tenant", "key", "revoke"),
    ("tenant", "key", "rotate"),
    ("ingest",),
    ("batch",),
    ("batch", "status"),
    ("ocr",),
    ("route",),
    ("dev",),
    ("dev", "tiny-checkpoint"),
}


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from command_paths(sub, (*path, name))


ALL = sorted(command_paths(cli))


def test_the_tree_has_every_command() -> None:
    assert set(ALL) == EXPECTED


@pytest.mark.parametrize("path", ALL, ids=[" ".join(p) or "scriptorium" for p in ALL])
def test_every_command_answers_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="scriptorium")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Usage: {' '.join(('scriptorium', *path))} ")


def test_a_missing_argument_is_a_usage_error_with_status_2() -> None:
    result = CliRunner().invoke(cli, ["route"], prog_name="scriptorium")
    assert result.exit_code == 2
    assert "Missing argument 'PATH...'" in result.stderr


@pytest.mark.parametrize("command", ["ocr", "route"])
def test_the_installed_command_answers_help_without_loading_the_engine(command: str) -> None:
    probe = (
        "import sys\n"
        "from scriptorium.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "heavy = ('torch', 'transformers', 'celery', 'worker.engine.deepseek')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert f"Usage: scriptorium {command} [OPTIONS] PATH..." in completed.stdout


def _console_script() -> list[str]:
    found = shutil.which("scriptorium", path=str(Path(sys.executable).parent)) or shutil.which("scriptorium")
    if found is None:
        pytest.fail("the scriptorium console script is not installed: pip install -e .")
    return [found]


@pytest.mark.parametrize("launcher", ["console script", "python -m"])
@pytest.mark.parametrize("command", ["ocr", "route"])
def test_scriptorium_ocr_and_route_answer_help(launcher: str, command: str) -> None:
    argv = _console_script() if launcher == "console script" else [sys.executable, "-m", "scriptorium.cli"]
    completed = subprocess.run(
        [*argv, command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert "--json" in completed.stdout and "--pages" in completed.stdout


def test_the_cli_offers_the_tasks_the_api_accepts() -> None:
    assert get_args(DocumentTask) == DOCUMENT_TASKS
