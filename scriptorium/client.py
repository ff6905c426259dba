"""A small HTTP client for the API, used by ``scriptorium ingest``."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import httpx
from tqdm import tqdm


class _ProgressReader(io.RawIOBase):
    """A file wrapper that advances a progress bar as the upload reads it."""

    def __init__(self, handle: IO[bytes], bar: tqdm) -> None:
        self._handle = handle
        self._bar = bar

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._bar.update(len(chunk))
        return chunk


def upload_file(
    client: httpx.Client,
    path: Path,
    *,
    fields: dict[str, str],
    bar: tqdm,
) -> dict[str, Any]:
    with path.open("rb") as handle:
        reader: IO[bytes] = _ProgressReader(handle, bar)  # type: ignore[assignment]
        response = client.post(
            "/v1/documents", data=fields, files={"file": (path.name, reader, "application/octet-stream")}
        )
    if response.status_code != 202:
        try:
            error = response.json()["error"]
            raise RuntimeError(f"{error['code']}: {error['message']}")
        except (ValueError, KeyError):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}") from None
    body: dict[str, Any] = response.json()
    return body


def ingest_paths(
    paths: Sequence[Path],
    *,
    base_url: str,
    api_key: str,
    mode: str = "",
    task: str = "markdown",
    pages: str | None = None,
    progress: bool = True,
) -> int:
    """Upload each file, printing ``<document id>\\t<path>`` per accepted file; returns an exit code."""
    files = [
        p for path in paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path]) if p.is_file()
    ]
    fields = {"task": task}
    if mode:
        fields["mode"] = mode
    if pages:
        fields["pages"] = pages
    failures = 0
    total = sum(p.stat().st_size for p in files)
    headers = {"Authorization": f"Bearer {api_key}"}
    timeout = httpx.Timeout(300.0, connect=10.0)
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client,
        tqdm(total=total, unit="B", unit_scale=True, disable=not progress, file=sys.stderr) as bar,
    ):
        for path in files:
            try:
                document = upload_file(client, path, fields=fields, bar=bar)
            except (RuntimeError, httpx.HTTPError) as error:
                failures += 1
                tqdm.write(f"failed\t{path}\t{error}", file=sys.stderr)
                continue
            tqdm.write(f"{document['id']}\t{path}", file=sys.stdout)
    print(f"{len(files) - failures} uploaded, {failures} failed", file=sys.stderr)
    return 1 if failures else 0
