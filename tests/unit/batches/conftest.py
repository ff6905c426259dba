"""Archive builders and a recording visitor for the unpacking tests."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from scriptorium.batches.archives import ArchiveLimits
from scriptorium.batches.states import IntakeReason


@dataclass
class Recorder:
    """An ArchiveVisitor that keeps what it was given, in order."""

    files: dict[str, bytes] = field(default_factory=dict)
    skips: list[tuple[str, IntakeReason]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    def file(self, name: str, stream: IO[bytes], size: int) -> None:
        data = b""
        while chunk := stream.read(4096):
            data += chunk
        assert len(data) == size
        self.files[name] = data
        self.order.append(name)

    def skipped(self, name: str, reason: IntakeReason, message: str) -> None:
        assert message
        self.skips.append((name, reason))
        self.order.append(name)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def limits() -> ArchiveLimits:
    return ArchiveLimits(
        max_expanded_bytes=10 * 1024 * 1024,
        max_entries=100,
        max_ratio=50.0,
        ratio_floor_bytes=64 * 1024,
        max_depth=2,
        max_entry_bytes=5 * 1024 * 1024,
    )


def zip_bytes(entries: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(
    entries: dict[str, bytes], *, mode: str = "w:gz", symlinks: dict[str, str] | None = None
) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = target
            archive.addfile(link)
    return buffer.getvalue()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path
