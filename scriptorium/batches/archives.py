"""Unpacking an untrusted zip or tar(.gz|.bz2|.xz) archive safely, one entry at a time.

Entries are streamed to a visitor (the worker stores each in object storage); nothing is ever
written to a path taken from the archive. The whole archive is refused, with a reason code, when
a member name is absolute or climbs out with ``..``, when it unpacks to too many bytes or
entries, when bytes come out of it (or of one entry) more than ``max_ratio`` times faster than
they went in (a zip bomb), when archives nest deeper than ``max_depth``, or when it is corrupt.
Symbolic and hard links, devices and fifos are skipped and reported. Zip central directories are
checked before any entry is read; tar archives are checked as they stream, so a refusal may come
after some entries were visited and the caller discards what it kept.
"""

from __future__ import annotations

import io
import lzma
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.settings import IntakeSettings

CHUNK = 1024 * 1024
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_COMPRESSED_TAR_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
_DECODING_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class ArchiveLimits:
    max_expanded_bytes: int
    max_entries: int
    max_ratio: float
    ratio_floor_bytes: int
    max_depth: int
    max_entry_bytes: int  # one file larger than this is rejected (the upload limit)

    @classmethod
    def from_settings(cls, intake: IntakeSettings, *, max_entry_bytes: int) -> ArchiveLimits:
        return cls(
            max_expanded_bytes=intake.archive_max_expanded_bytes,
            max_entries=intake.archive_max_entries,
            max_ratio=intake.archive_max_ratio,
            ratio_floor_bytes=intake.archive_ratio_floor_bytes,
            max_depth=intake.archive_max_depth,
            max_entry_bytes=max_entry_bytes,
        )


class ArchiveVisitor(Protocol):
    def file(self, name: str, stream: IO[bytes], size: int) -> None:
        """Consume one regular file's bytes (read to the end in chunks)."""

    def skipped(self, name: str, reason: IntakeReason, message: str) -> None:
        """An entry that is reported but not ingested."""


@dataclass
class UnpackSummary:
    files: int = 0
    skipped: int = 0
    entries: int = 0
    expanded_bytes: int = 0


def archive_format(head: bytes) -> str | None:
    """``zip`` or ``tar`` from an archive's first 512+ bytes; None when it is neither."""
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_COMPRESSED_TAR_MAGIC) or head[257:262] == b"ustar":
        return "tar"
    return None


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def safe_member_name(raw: str) -> str:
    """The member's normalised relative name; IntakeRefused when it is absolute or escapes."""
    name = raw.replace("\\", "/")
    if "\x00" in name:
        raise IntakeRefused(IntakeReason.ARCHIVE_UNSAFE_PATH, f"member name {raw!r} contains a NUL byte")
    if name.startswith("/") or _DRIVE.match(name):
        raise IntakeRefused(IntakeReason.ARCHIVE_UNSAFE_PATH, f"member {raw!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise IntakeRefused(IntakeReason.ARCHIVE_UNSAFE_PATH, f"member {raw!r} climbs out of the archive")
    return "/".join(parts)


@dataclass
class _Level:
    """One archive being read: its packed size and what has come out of it so far."""

    label: str
    packed: int
    unpacked: int = 0


@dataclass
class _Unpacker:
    limits: ArchiveLimits
    visitor: ArchiveVisitor
    scratch: Path
    summary: UnpackSummary = field(default_factory=UnpackSummary)

    # --- accounting ----------------------------------------------------------------------------

    def count_entry(self) -> None:
        self.summary.entries += 1
        if self.summary.entries > self.limits.max_entries:
            raise IntakeRefused(
                IntakeReason.ARCHIVE_TOO_MANY_ENTRIES,
                f"the archive holds more than {self.limits.max_entries} entries",
            )

    def check_declared(self, name: str, size: int, packed: int | None, levels: list[_Level]) -> None:
        """Refuse on what a member declares before reading it: a bomb by its ratio first (its own
        when its packed size is known, and what it would make each enclosing archive yield), then
        the archive's expanded-bytes limit."""
        self.check_declared_ratio(name, size, packed, levels)
        if self.summary.expanded_bytes + size > self.limits.max_expanded_bytes:
            raise self._too_large()

    def check_declared_ratio(self, name: str, size: int, packed: int | None, levels: list[_Level]) -> None:
        if packed is not None:
            self._check_ratio(f"member {name!r}", size, packed)
        for level in levels:
            self._check_ratio(level.label, level.unpacked + size, level.packed)

    def account(
        self, levels: list[_Level], entry: str, entry_bytes: int, entry_packed: int | None, n: int
    ) -> None:
        self.summary.expanded_bytes += n
        if self.summary.expanded_bytes > self.limits.max_expanded_bytes:
            raise self._too_large()
        for level in levels:
            level.unpacked += n
            self._check_ratio(level.label, level.unpacked, level.packed)
        if entry_packed is not None:
            self._check_ratio(f"member {entry!r}", entry_bytes, entry_packed)

    def _check_ratio(self, what: str, unpacked: int, packed: int) -> None:
        if unpacked > self.limits.ratio_floor_bytes and unpacked > self.limits.max_ratio * max(packed, 1):
            raise IntakeRefused(
                IntakeReason.ARCHIVE_COMPRESSION_RATIO,
                f"{what} expands more than {self.limits.max_ratio:g} times (a zip bomb?)",
            )

    def _too_large(self) -> IntakeRefused:
        return IntakeRefused(
            IntakeReason.ARCHIVE_TOO_LARGE,
            f"the archive unpacks to more than {self.limits.max_expanded_bytes} bytes",
        )

    # --- walking -------------------------------------------------------------------------------

    def walk(self, path: Path, prefix: str, levels: list[_Level]) -> None:
        depth = len(levels) + 1
        if depth > self.limits.max_depth:
            raise IntakeRefused(
                IntakeReason.ARCHIVE_TOO_DEEP,
                f"{prefix.rstrip('/') or 'the archive'} nests archives deeper than {self.limits.max_depth}",
            )
        with path.open("rb") as handle:
            kind = archive_format(handle.read(512))
        level = _Level(label=prefix.rstrip("/") or "the archive", packed=path.stat().st_size)
        chain = [*levels, level]
        if kind == "zip":
            self._walk_zip(path, prefix, chain)
        elif kind == "tar":
            self._walk_tar(path, prefix, chain)
        else:
            raise IntakeRefused(
                IntakeReason.ARCHIVE_UNSUPPORTED,
                f"{level.label} is not a zip or tar archive",
            )

    def _walk_zip(self, path: Path, prefix: str, levels: list[_Level]) -> None:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise IntakeRefused(IntakeReason.ARCHIVE_CORRUPT, f"unreadable zip archive: {error}") from error
        with archive:
            members = archive.infolist()
            self._precheck_zip(members, levels[-1])
            for info in members:
                self.count_entry()
                name = prefix + safe_member_name(info.filename)
                if info.is_dir():
                    continue
                file_type = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
                if file_type and file_type != stat.S_IFREG:
                    self._skip(name, "a link or special file")
                    continue
                if info.flag_bits & 0x1:
                    self.summary.skipped += 1
                    self.visitor.skipped(name, IntakeReason.ENCRYPTED_ENTRY, "the member is encrypted")
                    continue
                if info.file_size > self.limits.max_entry_bytes:
                    self.check_declared_ratio(name, info.file_size, info.compress_size, levels)
                    self._reject_large(name, info.file_size)
                    continue
                self.check_declared(name, info.file_size, info.compress_size, levels)
                try:
                    with archive.open(info) as stream:
                        self._entry(stream, name, info.file_size, info.compress_size, levels)
                except _DECODING_ERRORS as error:
                    raise IntakeRefused(
                        IntakeReason.ARCHIVE_CORRUPT, f"member {name!r} is corrupt: {error}"
                    ) from error
                except NotImplementedError as error:
                    raise IntakeRefused(
                        IntakeReason.ARCHIVE_UNSUPPORTED, f"member {name!r}: {error}"
                    ) from error

    def _precheck_zip(self, members: list[zipfile.ZipInfo], level: _Level) -> None:
        """Refuse what the central directory already gives away, before reading any entry."""
        if self.summary.entries + len(members) > self.limits.max_entries:
            raise IntakeRefused(
                IntakeReason.ARCHIVE_TOO_MANY_ENTRIES,
                f"the archive holds more than {self.limits.max_entries} entries",
            )
        declared = 0
        for info in members:
            name = safe_member_name(info.filename)
            if info.is_dir():
                continue
            self._check_ratio(f"member {name!r}", info.file_size, info.compress_size)
            if info.file_size <= self.limits.max_entry_bytes:  # larger ones are rejected, never read
                declared += info.file_size
        self._check_ratio(level.label, declared, level.packed)
        if self.summary.expanded_bytes + declared > self.limits.max_expanded_bytes:
            raise self._too_large()

    def _walk_tar(self, path: Path, prefix: str, levels: list[_Level]) -> None:
        try:
            with tarfile.open(path, mode="r|*") as archive:
                for member in archive:
                    self.count_entry()
                    name = prefix + safe_member_name(member.name)
                    if member.isdir():
                        continue
                    if not member.isreg():
                        self._skip(name, "a link or special file")
                        continue
                    if member.size > self.limits.max_entry_bytes:
                        # Skipping it still inflates it: its bytes count towards each level's ratio.
                        self.check_declared_ratio(name, member.size, None, levels)
                        for level in levels:
                            level.unpacked += member.size
                        self._reject_large(name, member.size)
                        continue
                    self.check_declared(name, member.size, None, levels)
                    stream = archive.extractfile(member)
                    if stream is None:
                        self._skip(name, "a member without data")
                        continue
                    with stream:
                        self._entry(stream, name, member.size, None, levels)
        except tarfile.ReadError as error:
            raise IntakeRefused(IntakeReason.ARCHIVE_CORRUPT, f"unreadable tar archive: {error}") from error
        except (tarfile.TarError, EOFError, OSError, ValueError) as error:
            raise IntakeRefused(IntakeReason.ARCHIVE_CORRUPT, f"corrupt tar archive: {error}") from error

    def _entry(
        self, stream: IO[bytes], name: str, size: int, packed: int | None, levels: list[_Level]
    ) -> None:
        metered = _MeteredReader(stream, self, levels, name, packed)
        if is_archive_name(name):
            with tempfile.NamedTemporaryFile(dir=self.scratch, suffix=".nested") as nested:
                while chunk := metered.read(CHUNK):
                    nested.write(chunk)
                nested.flush()
                self.walk(Path(nested.name), name + "/", levels)
            return
        self.summary.files += 1
        self.visitor.file(name, metered, size)  # type: ignore[arg-type]

    def _skip(self, name: str, what: str) -> None:
        self.summary.skipped += 1
        self.visitor.skipped(name, IntakeReason.NOT_A_REGULAR_FILE, f"the member is {what}; skipped")

    def _reject_large(self, name: str, size: int) -> None:
        self.summary.skipped += 1
        self.visitor.skipped(
            name, IntakeReason.TOO_LARGE, f"the member has {size} bytes, over {self.limits.max_entry_bytes}"
        )


class _MeteredReader(io.RawIOBase):
    """Counts every byte read from an entry against the unpacker's limits as it goes."""

    def __init__(
        self, source: IO[bytes], unpacker: _Unpacker, levels: list[_Level], name: str, packed: int | None
    ) -> None:
        self._source = source
        self._unpacker = unpacker
        self._levels = levels
        self._name = name
        self._packed = packed
        self._read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size if size is not None and size >= 0 else CHUNK)
        if chunk:
            self._read += len(chunk)
            self._unpacker.account(self._levels, self._name, self._read, self._packed, len(chunk))
        return bytes(chunk)


def unpack_archive(path: Path, limits: ArchiveLimits, visitor: ArchiveVisitor) -> UnpackSummary:
    """Visit every entry of the archive at ``path``; raises IntakeRefused when it must be refused."""
    with tempfile.TemporaryDirectory(prefix="scriptorium-archive-") as scratch:
        unpacker = _Unpacker(limits=limits, visitor=visitor, scratch=Path(scratch))
        unpacker.walk(path, "", [])
    if unpacker.summary.files == 0 and unpacker.summary.skipped == 0:
        raise IntakeRefused(IntakeReason.ARCHIVE_EMPTY, "the archive holds no files")
    return unpacker.summary
