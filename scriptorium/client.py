"""A small HTTP client for the API, used by ``scriptorium ingest`` and ``scriptorium batch status``.

Bulk ingestion into a named batch is resumable: the batch is created under an Idempotency-Key
derived from its name, so running the command again finds the same batch; files whose SHA-256
is already among the batch's inputs are skipped; the batch is closed once every file is in.
"""

from __future__ import annotations

import hashlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from scriptorium.progress import byte_progress, count_progress, note

HASH_CHUNK = 1024 * 1024
TERMINAL_BATCH_STATES = ("completed", "failed", "cancelled")


class ApiFailure(RuntimeError):
    """The API refused a request; the message carries its error code."""


class _ProgressReader(io.RawIOBase):
    """A file wrapper that advances a progress bar as the upload reads it."""

    def __init__(self, handle: IO[bytes], advance: Callable[[int], object]) -> None:
        self._handle = handle
        self._advance = advance

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._advance(len(chunk))
        return chunk


def _body(response: httpx.Response, *, expected: tuple[int, ...]) -> dict[str, Any]:
    if response.status_code not in expected:
        try:
            error = response.json()["error"]
            message = f"{error['code']}: {error['message']}"
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {response.status_code}: {response.text[:200]}"
        raise ApiFailure(message)
    body: dict[str, Any] = response.json()
    return body


class ApiClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float = 300.0) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    def close(self) -> None:
        self.http.close()

    def upload(
        self,
        path: Path,
        *,
        fields: dict[str, str],
        advance: Callable[[int], object] = lambda _: None,
        batch_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Stream one file; into a batch when ``batch_id`` is given (``fields`` then holds its name)."""
        url = f"/v1/batches/{batch_id}/documents" if batch_id else "/v1/documents"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with path.open("rb") as handle:
            reader: IO[bytes] = _ProgressReader(handle, advance)  # type: ignore[assignment]
            response = self.http.post(
                url,
                data=fields,
                files={"file": (path.name, reader, "application/octet-stream")},
                headers=headers,
            )
        return _body(response, expected=(202,))

    def create_batch(self, fields: dict[str, str], *, idempotency_key: str) -> dict[str, Any]:
        response = self.http.post("/v1/batches", data=fields, headers={"Idempotency-Key": idempotency_key})
        return _body(response, expected=(202,))

    def batch(self, batch_id: str) -> dict[str, Any]:
        return _body(self.http.get(f"/v1/batches/{batch_id}"), expected=(200,))

    def close_batch(self, batch_id: str) -> dict[str, Any]:
        return _body(self.http.post(f"/v1/batches/{batch_id}/close"), expected=(200,))

    def batch_items(self, batch_id: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = _body(self.http.get(f"/v1/batches/{batch_id}/items", params=params), expected=(200,))
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return


def batch_key(name: str) -> str:
    """The Idempotency-Key that makes ``--batch NAME`` find the same batch on every run."""
    return "cli-batch-" + hashlib.sha256(name.encode()).hexdigest()[:40]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def collect_files(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """Every file under ``paths`` with the name a batch input gets (relative to its directory)."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            found.extend((p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*")) if p.is_file())
        elif path.is_file():
            found.append((path, path.name))
    return found


def document_fields(
    *, mode: str, task: str, pages: str | None, priority: str | None, model: str | None = None
) -> dict[str, str]:
    fields = {"task": task}
    if model:
        fields["model"] = model
    if mode:
        fields["mode"] = mode
    if pages:
        fields["pages"] = pages
    if priority:
        fields["priority"] = priority
    return fields


@dataclass
class IngestSummary:
    uploaded: int = 0
    already_in: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.uploaded} uploaded, {self.already_in} already in, {self.failed} failed"


def _upload_all(
    client: ApiClient,
    files: list[tuple[Path, str]],
    *,
    fields: Callable[[str], dict[str, str]],
    batch_id: str | None,
    concurrency: int,
    progress: bool,
    summary: IngestSummary,
) -> None:
    """Upload files in parallel streams, printing ``<document id>\\t<path>`` for each accepted one."""
    lock = threading.Lock()
    total = sum(path.stat().st_size for path, _ in files)
    with byte_progress(progress) as bar:
        uploading = bar.add_task("uploading", total=total)

        def advance(n: int) -> None:
            with lock:
                bar.advance(uploading, n)

        def one(path: Path, name: str) -> dict[str, Any]:
            key = f"cli-{batch_id}-{hashlib.sha256(name.encode()).hexdigest()[:40]}" if batch_id else None
            return client.upload(
                path, fields=fields(name), advance=advance, batch_id=batch_id, idempotency_key=key
            )

        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="upload") as pool:
            futures = {pool.submit(one, path, name): path for path, name in files}
            for future in as_completed(futures):
                path = futures[future]
                try:
                    document = future.result()
                except (ApiFailure, httpx.HTTPError, OSError) as error:
                    summary.failed += 1
                    note(bar, f"failed\t{path}\t{error}")
                    continue
                summary.uploaded += 1
                print(f"{document['id']}\t{path}", flush=True)


def ingest_paths(
    paths: Sequence[Path],
    *,
    base_url: str,
    api_key: str,
    mode: str = "",
    task: str = "markdown",
    pages: str | None = None,
    progress: bool = True,
    batch: str | None = None,
    priority: str | None = None,
    model: str | None = None,
    concurrency: int = 4,
) -> int:
    """Upload files (into batch ``batch`` when named, resumably); returns an exit code."""
    files = collect_files(paths)
    common = document_fields(mode=mode, task=task, pages=pages, priority=priority, model=model)
    summary = IngestSummary()
    client = ApiClient(base_url, api_key)
    try:
        if batch is None:
            _upload_all(
                client,
                files,
                fields=lambda _: common,
                batch_id=None,
                concurrency=concurrency,
                progress=progress,
                summary=summary,
            )
            print(f"{summary.uploaded} uploaded, {summary.failed} failed", file=sys.stderr)
            return 1 if summary.failed else 0
        return _ingest_into_batch(
            client,
            files,
            name=batch,
            common=common,
            concurrency=concurrency,
            progress=progress,
            summary=summary,
        )
    except (ApiFailure, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _ingest_into_batch(
    client: ApiClient,
    files: list[tuple[Path, str]],
    *,
    name: str,
    common: dict[str, str],
    concurrency: int,
    progress: bool,
    summary: IngestSummary,
) -> int:
    created = client.create_batch({"name": name, **common}, idempotency_key=batch_key(name))
    batch_id = str(created["id"])
    known = {item["sha256"] for item in client.batch_items(batch_id) if item.get("sha256")}
    todo = files
    if known:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            hashes = list(pool.map(lambda entry: sha256_of(entry[0]), files))
        todo = [entry for entry, digest in zip(files, hashes, strict=True) if digest not in known]
        summary.already_in = len(files) - len(todo)
    if todo and created["state"] != "open":
        print(
            f"error: batch {name!r} ({batch_id}) is {created['state']} and takes no more files; "
            "ingest into a new batch name",
            file=sys.stderr,
        )
        return 1
    _upload_all(
        client,
        todo,
        fields=lambda input_name: {"name": input_name},
        batch_id=batch_id,
        concurrency=concurrency,
        progress=progress,
        summary=summary,
    )
    state = created["state"]
    if not summary.failed and state == "open":
        state = client.close_batch(batch_id)["state"]
    print(f"batch {batch_id} ({name}): {summary.line()}; {state}", file=sys.stderr)
    if summary.failed:
        print("run the same command again to upload what failed", file=sys.stderr)
    return 1 if summary.failed else 0


def ingest_prefix(
    uri: str,
    *,
    base_url: str,
    api_key: str,
    batch: str | None,
    mode: str = "",
    task: str = "markdown",
    pages: str | None = None,
    priority: str | None = None,
    model: str | None = None,
    progress: bool = True,
    watch: bool = False,
) -> int:
    """Ask the API to ingest every object under ``s3://source/bucket/prefix`` as one batch."""
    name = batch or uri
    fields = {
        "name": name,
        "prefix": uri,
        **document_fields(mode=mode, task=task, pages=pages, priority=priority, model=model),
    }
    client = ApiClient(base_url, api_key)
    try:
        created = client.create_batch(fields, idempotency_key=batch_key(name))
        print(created["id"])
        print(f"batch {created['id']} ({name}) is {created['state']}", file=sys.stderr)
        return follow_batch(client, str(created["id"]), progress=progress) if watch else 0
    except (ApiFailure, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()


def describe(batch: dict[str, Any]) -> str:
    progress = batch["progress"]
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(batch["outcomes"].items()) if v)
    tokens = batch["tokens"]
    model = batch.get("options", {}).get("model")
    line = (
        f"batch {batch['id']} ({batch['name']}): {batch['state']}, round {batch['round']}; "
        f"{f'model {model}; ' if model else ''}"
        f"{progress['finished']}/{progress['inputs']} inputs final"
        f"{'' if progress['inputs_complete'] else ' (still discovering)'}; "
        f"{outcomes or 'no outcomes yet'}; tokens vision {tokens['vision']} output {tokens['output']}"
    )
    if batch.get("error"):
        line += f"; error {batch['error']['code']}: {batch['error']['message']}"
    return line


def follow_batch(client: ApiClient, batch_id: str, *, progress: bool, interval: float = 2.0) -> int:
    """Show the batch's progress until it is final; exit code 0 when it completed."""
    batch = client.batch(batch_id)
    with count_progress(progress) as bar:
        inputs = bar.add_task(batch["state"], total=None)
        while True:
            bar.update(
                inputs,
                total=max(1, batch["progress"]["inputs"]),
                completed=batch["progress"]["finished"],
                description=batch["state"],
            )
            if batch["state"] in TERMINAL_BATCH_STATES:
                break
            time.sleep(interval)
            batch = client.batch(batch_id)
    print(describe(batch))
    return 0 if batch["state"] == "completed" else 1


def batch_status(batch_id: str, *, base_url: str, api_key: str, watch: bool, progress: bool = True) -> int:
    client = ApiClient(base_url, api_key)
    try:
        if watch:
            return follow_batch(client, batch_id, progress=progress)
        print(describe(client.batch(batch_id)))
        return 0
    except (ApiFailure, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
