"""Servers a fault test owns, so it can kill and restart them on the same address."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from tests.support.services import free_port, wait_for


@dataclass
class RedisServer:
    """A ``redis-server`` of the test's own on a free port, with or without an append-only file."""

    workdir: Path
    persistent: bool
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        )
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *persistence,
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            str(self.workdir),
        ]

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: redis.Redis(port=self.port).ping(), timeout=15, what="redis to start")
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save, connections reset mid-command."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers (a hung broker)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _postgres_binary(name: str) -> str:
    """``name`` on the PATH, else in the server's bin directory as ``pg_config`` reports it (Debian
    keeps initdb and pg_ctl off the PATH)."""
    found = shutil.which(name)
    if found:
        return found
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout
        candidate = Path(bindir.strip()) / name
        if bindir.strip() and candidate.exists():
            return str(candidate)
    raise RuntimeError(f"PostgreSQL's {name} is missing (neither on the PATH nor in pg_config --bindir)")


@dataclass
class PostgresServer:
    """A PostgreSQL instance of the test's own (initdb + pg_ctl on a free port), never the machine's."""

    workdir: Path
    port: int = field(default_factory=free_port)

    @property
    def datadir(self) -> Path:
        return self.workdir / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        # PostgreSQL refuses to run as root; the tests run as root on CI machines.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, cwd=self.workdir)

    def init(self) -> PostgresServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        self._run(
            _postgres_binary("initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        return self

    def start(self) -> None:
        # fsync off is safe here: the tests kill the server process, never the machine. Commits
        # stay synchronous, or a killed server would forget transactions it acknowledged.
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            _postgres_binary("pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: connections die at once, as when the server crashes; it recovers on start."""
        self._run(_postgres_binary("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
