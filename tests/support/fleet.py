"""Starting the fleet's real processes (API, workers, beat) for integration and e2e tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import select

from scriptorium.db.models import Document
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.lifecycle.documents import cancel_document, lock_document
from scriptorium.settings import DatabaseSettings
from scriptorium.states import TERMINAL_DOCUMENT_STATES
from tests.support.services import free_port, wait_for
from tests.support.units import unit_of_work

ROOT = Path(__file__).resolve().parents[2]
SCRIPTORIUM = [sys.executable, "-m", "scriptorium.cli"]
DETERMINISTIC_WORKER = [sys.executable, "-m", "tests.support.deterministic_worker"]


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restart: bool = False  # like compose's ``restart: unless-stopped``, under Fleet.supervise
    exits: list[int] = field(default_factory=list)  # exit codes of the runs a supervisor replaced

    def start(self) -> ManagedProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def stop(self) -> None:
        self.restart = False
        self.kill_group(signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Fleet:
    env: dict[str, str]
    workdir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    api_url: str = ""

    supervisor: threading.Thread | None = None
    _supervising: threading.Event = field(default_factory=threading.Event)

    def spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> ManagedProcess:
        env = {**self.env, **(extra_env or {})}
        process = ManagedProcess(name, argv, env, self.workdir / f"{name}.log").start()
        process.restart = self._supervising.is_set()
        self.processes.append(process)
        return process

    def supervise(self) -> None:
        """From now on, restart every process that exits, as compose's restart policy does."""
        self._supervising.set()
        for process in self.processes:
            process.restart = True
        if self.supervisor is None:
            self.supervisor = threading.Thread(target=self._restart_exited, daemon=True)
            self.supervisor.start()

    def _restart_exited(self) -> None:
        while self._supervising.is_set():
            for process in list(self.processes):
                code = process.process.poll() if process.process is not None else None
                if process.restart and code is not None:
                    process.exits.append(code)
                    with process.log_path.open("ab") as log:
                        log.write(f"\n== supervisor: exited with {code}, restarting ==\n".encode())
                    process.start()
            time.sleep(0.5)

    def start_api(self) -> ManagedProcess:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.env["SCRIPTORIUM_API__PUBLIC_URL"] = self.api_url  # links in events point at this API
        process = self.spawn(
            "api",
            [*SCRIPTORIUM, "api", "--host", "127.0.0.1", "--port", str(port)],
            {"SCRIPTORIUM_API__PUBLIC_URL": self.api_url},
        )
        wait_for(
            lambda: httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200,
            timeout=60,
            interval=0.3,
            what="the API to be ready",
        )
        return process

    def start_cpu_worker(self, name: str = "worker-cpu") -> ManagedProcess:
        return self.spawn(
            name,
            [*SCRIPTORIUM, "worker", "--queues", "cpu", "--concurrency", "1", "--hostname", f"{name}@test"],
        )

    def start_gpu_worker(
        self,
        name: str = "worker-gpu",
        *,
        engine_env: dict[str, str] | None = None,
        real_engine: bool = False,
        wait_ready: bool = True,
        wrap: list[str] | None = None,
    ) -> ManagedProcess:
        """``wrap`` prefixes the command (e.g. ``ip netns exec NAME`` to run it on a host of its own)."""
        ready = self.workdir / f"{name}.ready"
        ready.unlink(missing_ok=True)
        base = [*SCRIPTORIUM, "worker"] if real_engine else DETERMINISTIC_WORKER
        process = self.spawn(
            name,
            [
                *(wrap or []),
                *base,
                "--queues",
                "gpu",
                "--hostname",
                f"{name}@test",
                "--ready-file",
                str(ready),
            ],
            engine_env,
        )
        if wait_ready:
            wait_for(
                lambda: ready.exists() or not process.alive(),
                timeout=180,
                interval=0.2,
                what=f"{name} to load its engine",
            )
            assert process.alive(), f"{name} died on start:\n{process.log()[-3000:]}"
        return process

    def start_beat(self) -> ManagedProcess:
        """Beat and the sweeper; the sweeper touches ``beat.alive`` after every successful pass."""
        return self.spawn("beat", [*SCRIPTORIUM, "beat", "--liveness-file", str(self.workdir / "beat.alive")])

    def stop(self) -> None:
        self._supervising.clear()
        if self.supervisor is not None:
            self.supervisor.join(timeout=5)
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-4000:]}" for p in self.processes)


def cancel_leftover_work(database_url: str) -> int:
    """Cancel documents an earlier test's fleet left unfinished, so a new fleet starts idle.

    Test modules share one database; without this a new fleet's sweeper would pick up another
    module's queued pages and its engine would count work that is not the test's.
    """
    engine = make_engine(DatabaseSettings(url=database_url))
    try:
        with unit_of_work(make_session_factory(engine)) as uow:
            open_ids = (
                uow.session.execute(
                    select(Document.id)
                    .where(Document.state.not_in(TERMINAL_DOCUMENT_STATES))
                    .order_by(Document.id)
                )
                .scalars()
                .all()
            )
            for document_id in open_ids:
                document = lock_document(uow.session, document_id)
                if document is not None:
                    cancel_document(uow, document)
        return len(open_ids)
    finally:
        engine.dispose()


@contextmanager
def running_fleet(env: dict[str, str], workdir: Path) -> Iterator[Fleet]:
    cancel_leftover_work(env["SCRIPTORIUM_DB__URL"])
    fleet = Fleet(env=env, workdir=workdir)
    try:
        yield fleet
    finally:
        fleet.stop()


def wait_until(predicate, *, timeout: float, what: str, fleet: Fleet | None = None):  # type: ignore[no-untyped-def]
    try:
        return wait_for(predicate, timeout=timeout, interval=0.25, what=what)
    except TimeoutError:
        if fleet is not None:
            print(fleet.logs())
        raise


def elapsed(since: float) -> float:
    return time.monotonic() - since
