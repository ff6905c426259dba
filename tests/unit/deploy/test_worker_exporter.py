"""The worker's exporter adds up its pool processes and forgets the live gauges of dead ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scriptorium.settings import MetricsSettings
from tests.support.services import free_port
from tests.unit.deploy.deployment import ROOT
from worker import metrics_server

# Runs in a fresh interpreter: multiprocess mode is chosen when prometheus_client is imported.
POOL = textwrap.dedent(
    """
    import json, os, sys, time, urllib.request
    from scriptorium import metrics
    from scriptorium.settings import MetricsSettings
    from worker.metrics_server import start_worker_exporter

    port = int(sys.argv[1])
    exporter = start_worker_exporter(MetricsSettings(worker_port=port), host="127.0.0.1")
    assert exporter is not None

    def pool_process(pages, exit_now):
        ready_read, ready_write = os.pipe()
        release_read, release_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _ in range(pages):
                metrics.count_page("base", "done", seconds=1.0)
            metrics.record_engine_ready(object(), load_seconds=float(pages), warmup_seconds=0.5)
            os.write(ready_write, b"x")
            if not exit_now:
                os.read(release_read, 1)  # until the parent says so
            os._exit(0)
        os.read(ready_read, 1)
        return pid, release_write

    crashed, _ = pool_process(1, exit_now=True)
    os.waitpid(crashed, 0)
    alive, release = pool_process(2, exit_now=False)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    os.write(release, b"x")
    os.waitpid(alive, 0)
    exporter.stop()
    print(json.dumps({"text": text, "alive": alive, "files": sorted(os.listdir(exporter.directory))}))
    """
)


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in:\n{text}")


def test_metrics_of_every_pool_process_are_merged(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_99999999.db").write_bytes(b"stale")  # left by a previous run
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-c", POOL, str(free_port())],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    text = result["text"]
    # Counters keep what exited processes counted; live gauges only count running processes.
    assert _value(text, 'scriptorium_pages_total{mode="base",outcome="done"}') == 3
    assert _value(text, 'scriptorium_page_seconds_count{mode="base"}') == 3
    assert _value(text, "scriptorium_engines_ready") == 1
    assert _value(text, "scriptorium_model_load_seconds") == 2
    assert "counter_99999999.db" not in result["files"]


def test_dead_processes_are_found_from_their_files(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = int(finished.stdout)
    alive = os.getpid()
    names = (f"gauge_livesum_{dead}", f"gauge_livemax_{dead}", f"gauge_livesum_{alive}", f"counter_{dead}")
    for name in names:
        (tmp_path / f"{name}.db").write_bytes(b"")
    assert metrics_server.exited_processes(tmp_path) == [dead]


def test_reset_empties_the_directory_of_metric_files(tmp_path: Path) -> None:
    directory = tmp_path / "missing" / "metrics"
    metrics_server.reset_directory(directory)
    (directory / "histogram_1.db").write_bytes(b"")
    (directory / "keep.txt").write_text("not ours")
    metrics_server.reset_directory(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]


def test_the_exporter_stays_off_when_it_cannot_merge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metrics_server.start_worker_exporter(MetricsSettings(worker_port=free_port())) is None
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    # Set after the client was imported: values are not written to files, so do not pretend.
    assert not metrics_server.values_are_shared()
    assert metrics_server.start_worker_exporter(MetricsSettings(worker_port=free_port())) is None
    assert metrics_server.start_worker_exporter(MetricsSettings(worker_port=0)) is None
