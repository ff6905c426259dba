"""Unpacking untrusted archives: what is visited, what is skipped, and what refuses the archive."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from scriptorium.batches.archives import ArchiveLimits, archive_format, safe_member_name, unpack_archive
from scriptorium.batches.states import IntakeReason, IntakeRefused
from tests.unit.batches.conftest import Recorder, tar_bytes, write, zip_bytes


def _refusal(path: Path, limits: ArchiveLimits, recorder: Recorder) -> IntakeReason:
    with pytest.raises(IntakeRefused) as refused:
        unpack_archive(path, limits, recorder)
    assert refused.value.message
    return refused.value.reason


def test_a_zip_is_visited_in_order_with_relative_names(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    archive = write(
        tmp_path,
        "a.zip",
        zip_bytes({"scans/": b"", "scans/1.png": b"one", "./scans//2.pdf": b"two", "3.tif": b"x"}),
    )
    summary = unpack_archive(archive, limits, recorder)
    assert recorder.order == ["scans/1.png", "scans/2.pdf", "3.tif"]
    assert recorder.files["scans/2.pdf"] == b"two"
    assert (summary.files, summary.skipped, summary.entries) == (3, 0, 4)


def test_links_in_a_tar_are_skipped_and_reported(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    archive = write(
        tmp_path, "a.tar.gz", tar_bytes({"a.png": b"a", "b.png": b"b"}, symlinks={"c.png": "/etc/passwd"})
    )
    unpack_archive(archive, limits, recorder)
    assert set(recorder.files) == {"a.png", "b.png"}
    assert recorder.skips == [("c.png", IntakeReason.NOT_A_REGULAR_FILE)]


def test_a_symlink_in_a_zip_is_skipped(tmp_path: Path, limits: ArchiveLimits, recorder: Recorder) -> None:
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("evil.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/shadow")
        archive.writestr("fine.png", b"png")
    unpack_archive(path, limits, recorder)
    assert list(recorder.files) == ["fine.png"]
    assert recorder.skips == [("evil.png", IntakeReason.NOT_A_REGULAR_FILE)]


@pytest.mark.parametrize("name", ["../../etc/passwd", "docs/../../x.png", "..\\windows\\x.png"])
def test_a_zip_with_a_climbing_name_is_refused_before_anything_is_read(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder, name: str
) -> None:
    archive = write(tmp_path, "evil.zip", zip_bytes({"ok.png": b"fine", name: b"root::0:0"}))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_UNSAFE_PATH
    assert recorder.files == {}


@pytest.mark.parametrize("name", ["/etc/passwd", "C:/Windows/x.png", "//server/share/x.png"])
def test_a_tar_with_an_absolute_name_is_refused(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder, name: str
) -> None:
    archive = write(tmp_path, "evil.tar", tar_bytes({name: b"x"}, mode="w"))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_UNSAFE_PATH


def test_safe_member_names() -> None:
    assert safe_member_name("a/./b//c.png") == "a/b/c.png"
    assert safe_member_name("a\\b.png") == "a/b.png"
    with pytest.raises(IntakeRefused):
        safe_member_name("a/../../b")


def test_a_zip_bomb_is_refused_from_its_directory(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    archive = write(
        tmp_path, "bomb.zip", zip_bytes({"first.png": b"ok", "zeros.png": bytes(4 * 1024 * 1024)})
    )
    assert archive.stat().st_size < 64 * 1024
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_COMPRESSION_RATIO
    assert recorder.files == {}  # nothing was visited: the central directory gave it away


def test_a_gzip_bomb_is_refused_while_streaming(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    archive = write(
        tmp_path, "bomb.tgz", tar_bytes({"first.png": b"ok", "zeros.png": bytes(4 * 1024 * 1024)})
    )
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_COMPRESSION_RATIO
    assert "zeros.png" not in recorder.files


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tgz"])
@pytest.mark.parametrize("size", [8 * 1024 * 1024, 16 * 1024 * 1024])
def test_a_single_member_bomb_larger_than_the_entry_limit_is_refused_as_a_bomb(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder, name: str, size: int
) -> None:
    """Over the per-file limit (5 MiB) and, at 16 MiB, over the whole-archive limit (10 MiB) too: the
    ratio gives it away, so it is the bomb refusal, not a too-large member the rest survives."""
    build = zip_bytes if name.endswith(".zip") else tar_bytes
    archive = write(tmp_path, name, build({"zeros.png": bytes(size)}))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_COMPRESSION_RATIO
    assert recorder.files == {} and recorder.skips == []


@pytest.mark.parametrize("name", ["big.zip", "big.tar"])
def test_an_incompressible_member_over_the_entry_limit_is_too_large_not_a_bomb(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder, name: str
) -> None:
    entries = {"big.pdf": os.urandom(6 * 1024 * 1024), "small.pdf": b"fits"}
    if name.endswith(".zip"):
        data = zip_bytes(entries, compression=zipfile.ZIP_STORED)
    else:
        data = tar_bytes(entries, mode="w")
    unpack_archive(write(tmp_path, name, data), limits, recorder)
    assert list(recorder.files) == ["small.pdf"]
    assert recorder.skips == [("big.pdf", IntakeReason.TOO_LARGE)]


def test_an_archive_that_unpacks_to_too_much_is_refused(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    noise = {f"{i}.png": os.urandom(4 * 1024 * 1024) for i in range(3)}  # incompressible, 12 MiB > 10 MiB
    archive = write(tmp_path, "big.zip", zip_bytes(noise, compression=zipfile.ZIP_STORED))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_TOO_LARGE


def test_an_archive_with_too_many_entries_is_refused(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    archive = write(tmp_path, "many.tar", tar_bytes({f"{i}.png": b"x" for i in range(101)}, mode="w"))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_TOO_MANY_ENTRIES


def test_one_oversized_member_is_rejected_and_the_rest_kept(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    small = ArchiveLimits(**{**limits.__dict__, "max_entry_bytes": 100})
    archive = write(tmp_path, "mixed.zip", zip_bytes({"big.pdf": os.urandom(200), "small.pdf": b"fits"}))
    unpack_archive(archive, small, recorder)
    assert list(recorder.files) == ["small.pdf"]
    assert recorder.skips == [("big.pdf", IntakeReason.TOO_LARGE)]


def test_nested_archives_are_unpacked_within_the_depth_limit(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    inner = tar_bytes({"page.png": b"inner page"})
    archive = write(tmp_path, "outer.zip", zip_bytes({"top.png": b"top", "box/inner.tar.gz": inner}))
    unpack_archive(archive, limits, recorder)
    assert recorder.files == {"top.png": b"top", "box/inner.tar.gz/page.png": b"inner page"}


def test_archives_nested_too_deep_are_refused(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    deepest = zip_bytes({"page.png": b"p"})
    middle = zip_bytes({"deepest.zip": deepest})
    archive = write(tmp_path, "outer.zip", zip_bytes({"middle.zip": middle}))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_TOO_DEEP


def test_a_corrupt_member_refuses_the_archive(
    tmp_path: Path, limits: ArchiveLimits, recorder: Recorder
) -> None:
    data = bytearray(zip_bytes({"a.png": b"A" * 1000 + os.urandom(1000)}, compression=zipfile.ZIP_STORED))
    offset = data.index(b"AAAA")
    data[offset : offset + 4] = b"BBBB"  # the stored bytes no longer match their CRC
    archive = write(tmp_path, "corrupt.zip", bytes(data))
    assert _refusal(archive, limits, recorder) is IntakeReason.ARCHIVE_CORRUPT


def test_what_is_not_an_archive_is_refused(tmp_path: Path, limits: ArchiveLimits, recorder: Recorder) -> None:
    assert _refusal(write(tmp_path, "a.pdf", b"%PDF-1.7 not an archive"), limits, recorder) is (
        IntakeReason.ARCHIVE_UNSUPPORTED
    )
    assert (
        _refusal(write(tmp_path, "empty.zip", zip_bytes({})), limits, recorder) is IntakeReason.ARCHIVE_EMPTY
    )


def test_formats_are_told_by_their_magic_bytes() -> None:
    assert archive_format(zip_bytes({"a": b"a"})[:512]) == "zip"
    assert archive_format(tar_bytes({"a": b"a"})[:512]) == "tar"
    assert archive_format(tar_bytes({"a": b"a"}, mode="w")[:512]) == "tar"
    assert archive_format(b"%PDF-1.7") is None
