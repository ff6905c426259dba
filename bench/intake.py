"""Intake through the API: documents/s and MB/s for small and large files, and the API's memory
while a file far larger than its memory budget streams in.

Starts real services (a scratch Postgres database, a Redis database, SeaweedFS) and the real API
process (``scriptorium api``), no workers: what is measured is the HTTP edge itself, i.e. the
multipart upload, hashing while streaming to S3, the document row, dedup lookup and the
``prepare`` message. Every upload carries distinct bytes. Memory is the API process's resident
set from ``/proc/<pid>/status`` (``VmHWM``, the peak, reset just before the big upload), which is
what a container memory limit counts. The big file is generated while it is sent, so the client
holds no copy of it either. Flat means: the peak while a file 4× larger streams in is the same
(within 32 MiB of allocator noise) as with the smaller one, and stays under the budget; what the
upload path keeps (S3 multipart part buffers, parser buffers) does not grow with the file.

    .venv/bin/python -m bench.intake [--small 300] [--small-kb 64] [--large 4] [--large-mb 64]
                                     [--stream-mb 2048] [--memory-budget-mb 256] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.services import scratch_services, settings_from
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.storage import ObjectStore
from tests.support import builders
from tests.support.fleet import running_fleet

MIB = 1024 * 1024
BLOCK = os.urandom(MIB)  # generated uploads repeat it; each starts with its own id, so hashes differ


class GeneratedFile(io.RawIOBase):
    """``size`` bytes made on the fly (a unique prefix, then a repeated random block)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._prefix = uuid.uuid4().bytes

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        wanted = min(self._left, MIB if size is None or size < 0 else size)
        if wanted <= 0:
            return b""
        head, self._prefix = self._prefix[:wanted], self._prefix[wanted:]
        body = head + BLOCK[: wanted - len(head)]
        self._left -= len(body)
        return body


@dataclass(frozen=True)
class Throughput:
    label: str
    documents: int
    seconds: float
    bytes_sent: int

    def row(self) -> str:
        return (
            f"| {self.label} | {self.documents} | {self.documents / self.seconds:.1f} "
            f"| {self.bytes_sent / MIB / self.seconds:.1f} |"
        )


def _upload(client: httpx.Client, size: int) -> None:
    response = client.post(
        "/v1/documents", files={"file": ("generated.bin", GeneratedFile(size), "application/octet-stream")}
    )
    if response.status_code != 202:
        raise RuntimeError(f"upload refused: {response.status_code} {response.text[:200]}")


def throughput(client: httpx.Client, label: str, *, count: int, size: int, concurrency: int) -> Throughput:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(lambda _: _upload(client, size), range(count)))
    return Throughput(label, count, time.perf_counter() - started, count * size)


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


@dataclass(frozen=True)
class MemoryProfile:
    stream_mb: int
    seconds: float
    baseline_mib: float
    peak_mib: float

    def describe(self) -> str:
        return (
            f"{self.stream_mb} MiB in {self.seconds:.1f} s ({self.stream_mb / self.seconds:.0f} MB/s): "
            f"API resident {self.baseline_mib:.0f} MiB before, peak {self.peak_mib:.0f} MiB"
        )


def stream_memory(client: httpx.Client, pid: int, *, stream_mb: int) -> MemoryProfile:
    """Peak resident memory of the API process while one ``stream_mb`` upload goes through it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    baseline = _status_kib(pid, "VmRSS") / 1024
    started = time.perf_counter()
    _upload(client, stream_mb * MIB)
    return MemoryProfile(
        stream_mb=stream_mb,
        seconds=time.perf_counter() - started,
        baseline_mib=baseline,
        peak_mib=_status_kib(pid, "VmHWM") / 1024,
    )


def _timed(what: str, run: Callable[[], Throughput]) -> Throughput:
    print(f"… {what}", flush=True)
    return run()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=300, help="small uploads")
    parser.add_argument("--small-kb", type=int, default=64)
    parser.add_argument("--large", type=int, default=4, help="large uploads")
    parser.add_argument("--large-mb", type=int, default=64)
    parser.add_argument("--stream-mb", type=int, default=2048, help="the upload the memory is watched during")
    parser.add_argument(
        "--memory-budget-mb", type=int, default=256, help="the API's memory limit to stay under"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel client connections")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scriptorium-bench-intake-"))
    with scratch_services(workdir) as scratch:
        env = {
            **scratch.env,
            "SCRIPTORIUM_LOG__LEVEL": "WARNING",
            "SCRIPTORIUM_LIMITS__MAX_UPLOAD_BYTES": str((args.stream_mb + 1) * MIB),
            "SCRIPTORIUM_RATE_LIMIT__REQUESTS_PER_S": "0",  # measure the API, not its rate limit
        }
        settings = settings_from(env)
        ObjectStore(settings.storage).ensure_bucket()
        database = make_engine(settings.db)
        with make_session_factory(database).begin() as session:
            key = builders.tenant(session).key
        database.dispose()
        with running_fleet(env, workdir) as fleet:
            api = fleet.start_api()
            timeout = httpx.Timeout(600.0, connect=10.0)
            limits = httpx.Limits(max_connections=args.concurrency)
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(
                base_url=fleet.api_url, headers=headers, timeout=timeout, limits=limits
            ) as client:
                _upload(client, 1024)  # warm-up: connections, first import paths
                small = _timed(
                    "small files",
                    lambda: throughput(
                        client,
                        f"{args.small_kb} KiB",
                        count=args.small,
                        size=args.small_kb * 1024,
                        concurrency=args.concurrency,
                    ),
                )
                large = _timed(
                    "large files",
                    lambda: throughput(
                        client,
                        f"{args.large_mb} MiB",
                        count=args.large,
                        size=args.large_mb * MIB,
                        concurrency=min(args.concurrency, args.large),
                    ),
                )
                print(
                    f"… {args.stream_mb // 4} and {args.stream_mb} MiB uploads, API memory watched",
                    flush=True,
                )
                smaller = stream_memory(client, api.pid, stream_mb=args.stream_mb // 4)
                memory = stream_memory(client, api.pid, stream_mb=args.stream_mb)

    print(f"\nintake through the API, {args.concurrency} client connections, no workers")
    print("| upload | documents | documents/s | MB/s |")
    print("|---|---:|---:|---:|")
    print(small.row())
    print(large.row())
    print(f"\nstreamed uploads, memory budget {args.memory_budget_mb} MiB:")
    print(f"  {smaller.describe()}")
    print(f"  {memory.describe()} ({memory.stream_mb / args.memory_budget_mb:.0f}× the budget)")
    flat = memory.peak_mib < args.memory_budget_mb and memory.peak_mib - smaller.peak_mib < 32
    print("memory stays flat" if flat else "MEMORY GREW WITH THE UPLOAD")
    if not flat:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
