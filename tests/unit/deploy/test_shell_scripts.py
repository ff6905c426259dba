"""The bash entry points (CI, the test command, benches): shellcheck-clean, install before they start."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.deploy.deployment import ROOT

BASH_SCRIPTS = (ROOT / ".ci" / "run", *sorted(ROOT.glob("scripts/*.sh")), *sorted(ROOT.glob("bench/*.sh")))


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("shellcheck is missing: pip install -e '.[dev]'")
    return found


@pytest.mark.parametrize("script", BASH_SCRIPTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_the_script_passes_shellcheck(script: Path) -> None:
    completed = subprocess.run(
        [_shellcheck(), "--shell=bash", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stdout


def test_ci_installs_the_services_before_it_starts_them() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()

    def first(needle: str) -> int:
        return next(number for number, line in enumerate(lines) if needle in line)

    installed = first("apt-get install")
    assert installed < first("pg_ctlcluster --skip-systemctl-redirect")
    assert installed < first("redis-server --daemonize")
