from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.document import DocumentInfo
from worker.prepare.sandbox_protocol import (
    MANIFEST_NAME,
    ChildEvent,
    ChildStart,
    EventKind,
    ManifestError,
    ProtocolError,
    RenderedPageFile,
    SandboxRequest,
    page_file_name,
    read_manifest,
    remove_manifest,
    write_rejected,
    write_rendered,
)
from worker.prepare.sniff import DocumentKind


def _page_file(out_dir: Path, page_no: int, text: str | None) -> RenderedPageFile:
    path = out_dir / page_file_name(page_no)
    Image.new("RGB", (3, 2)).save(path)
    return RenderedPageFile(page_no=page_no, path=path, width=3, height=2, dpi=144, text_layer=text)


def test_request_round_trips_through_json(tmp_path: Path) -> None:
    request = SandboxRequest(
        seq=3,
        path=tmp_path / "in.pdf",
        out_dir=tmp_path / "out",
        pages=[2, 5],
        password="sésame",
        page_selection=None,
    )
    assert SandboxRequest.from_json(request.to_json()) == request
    assert "\n" not in request.to_json()  # one request per line


def test_start_round_trips_through_json() -> None:
    start = ChildStart(limits=PrepareSettings(dpi=200, max_pages=7, render_memory_mb=512), max_documents=9)
    assert ChildStart.from_json(start.to_json()) == start


@pytest.mark.parametrize(
    "event",
    [
        ChildEvent(EventKind.READY),
        ChildEvent(EventKind.STARTED, 4),
        ChildEvent(EventKind.DONE, 4, retire=True),
    ],
)
def test_events_round_trip_as_single_lines(event: ChildEvent) -> None:
    line = event.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert ChildEvent.from_line(line.rstrip(b"\n")) == event


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"not json",
        b"[1]",
        b'{"event": "exploded", "seq": 1, "retire": false}',
        b'{"event": "done"}',
        b"\xff",
    ],
)
def test_a_malformed_event_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        ChildEvent.from_line(line)


def test_rendered_manifest_round_trips(tmp_path: Path) -> None:
    pages = [_page_file(tmp_path, 1, "Hello\nworld"), _page_file(tmp_path, 3, None)]
    info = DocumentInfo(kind=DocumentKind.TIFF, page_count=3)

    write_rendered(tmp_path, info, pages)
    result = read_manifest(tmp_path)

    assert result.info == info
    assert result.pages == pages
    assert not list(tmp_path.glob(".*partial"))


def test_rejected_manifest_raises_the_same_rejection(tmp_path: Path) -> None:
    write_rejected(tmp_path, InputRejected(ReasonCode.ENCRYPTED, "The PDF is password-protected."))
    with pytest.raises(InputRejected) as caught:
        read_manifest(tmp_path)
    assert (caught.value.reason, caught.value.message) == (
        ReasonCode.ENCRYPTED,
        "The PDF is password-protected.",
    )


def test_a_missing_manifest_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"version": 99, "outcome": "rendered"}),
        json.dumps({"version": 1, "outcome": "exploded"}),
        json.dumps({"version": 1, "outcome": "rejected", "reason": "no_such_reason", "message": "x"}),
        json.dumps({"version": 1, "outcome": "rendered", "kind": "pdf", "page_count": 1}),
    ],
)
def test_a_malformed_manifest_is_a_manifest_error(tmp_path: Path, body: str) -> None:
    (tmp_path / MANIFEST_NAME).write_text(body, encoding="utf-8")
    with pytest.raises(ManifestError):
        read_manifest(tmp_path)


def test_a_page_named_outside_the_output_directory_is_refused(tmp_path: Path) -> None:
    page = _page_file(tmp_path, 1, None)
    write_rendered(tmp_path, DocumentInfo(kind=DocumentKind.PNG, page_count=1), [page])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["pages"][0]["file"] = "../../etc/passwd"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(ManifestError):
        read_manifest(tmp_path)


def test_a_page_file_that_is_missing_is_refused(tmp_path: Path) -> None:
    page = _page_file(tmp_path, 1, None)
    write_rendered(tmp_path, DocumentInfo(kind=DocumentKind.PNG, page_count=1), [page])
    page.path.unlink()

    with pytest.raises(ManifestError):
        read_manifest(tmp_path)


def test_remove_manifest_clears_an_earlier_result(tmp_path: Path) -> None:
    write_rejected(tmp_path, InputRejected(ReasonCode.CORRUPT, "Damaged."))
    remove_manifest(tmp_path)
    remove_manifest(tmp_path)
    assert not (tmp_path / MANIFEST_NAME).exists()
