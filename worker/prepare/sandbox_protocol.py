"""What the sandbox parent and its render child exchange.

A child lives for many documents. On its stdin it reads one JSON line to start (:class:`ChildStart`:
its limits and how many documents it serves), then one line per document (:class:`SandboxRequest`).
On a private reply channel (its original stdout) it writes one JSON line per event
(:class:`ChildEvent`): ``ready`` once confined, ``started`` when it takes a document, ``done`` when
that document's manifest is written. Each document's result is its output directory: PNGs, then the
manifest as the child's last act for it, appearing (atomically) only once every page is on disk or
once the document was refused. The parent trusts nothing in it that it does not check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.settings import PrepareSettings
from worker.prepare.document import DocumentInfo, FailedPage
from worker.prepare.sniff import DocumentKind

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

# The child exits 0 when its stdin ends or it retires after a ``done``; this is the other way it
# ends on purpose (a document needed more memory than the address-space cap allows).
EXIT_OUT_OF_MEMORY = 3
# The longest event line the parent reads; anything longer is a protocol error.
MAX_EVENT_BYTES = 4096


class ManifestError(Exception):
    """The child's manifest is missing or malformed."""


class ProtocolError(Exception):
    """A line between parent and child that does not follow the protocol."""


@dataclass(frozen=True)
class RenderedPageFile:
    page_no: int
    path: Path  # the page as PNG, in the output directory
    width: int
    height: int
    dpi: int
    text_layer: str | None


@dataclass(frozen=True)
class SandboxResult:
    info: DocumentInfo
    pages: list[RenderedPageFile]
    failed: list[FailedPage] = field(default_factory=list)  # selected pages that could not be drawn


@dataclass(frozen=True)
class ChildStart:
    """The first line a child reads: the limits it is confined under and serves every document with."""

    limits: PrepareSettings
    max_documents: int  # the child retires after this many documents

    def to_json(self) -> str:
        return json.dumps(
            {"limits": self.limits.model_dump(mode="json"), "max_documents": self.max_documents}
        )

    @classmethod
    def from_json(cls, text: str) -> ChildStart:
        fields = _object(text)
        return cls(
            limits=PrepareSettings.model_validate(fields["limits"]),
            max_documents=int(fields["max_documents"]),
        )


@dataclass(frozen=True)
class SandboxRequest:
    """One document to render; ``seq`` numbers the child's documents so replies cannot be mixed up."""

    seq: int
    path: Path
    out_dir: Path
    pages: list[int] | None
    password: str | None
    page_selection: str | None = None  # e.g. "1-3,5,9-"; resolved once the page count is known

    def to_json(self) -> str:
        return json.dumps(
            {
                "seq": self.seq,
                "path": str(self.path),
                "out_dir": str(self.out_dir),
                "pages": self.pages,
                "password": self.password,
                "page_selection": self.page_selection,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SandboxRequest:
        fields = _object(text)
        pages = fields["pages"]
        return cls(
            seq=int(fields["seq"]),
            path=Path(fields["path"]),
            out_dir=Path(fields["out_dir"]),
            pages=None if pages is None else [int(page) for page in pages],
            password=fields["password"],
            page_selection=fields["page_selection"],
        )


class EventKind(StrEnum):
    READY = "ready"  # confined and waiting for documents
    STARTED = "started"  # took document ``seq``; from here its failure is that document's
    DONE = "done"  # document ``seq``'s manifest is written


@dataclass(frozen=True)
class ChildEvent:
    kind: EventKind
    seq: int = 0  # the document's number; 0 for ``ready``
    retire: bool = False  # on ``done``: the child exits now (served its quota or grew too large)

    def to_line(self) -> bytes:
        body = {"event": self.kind.value, "seq": self.seq, "retire": self.retire}
        return json.dumps(body).encode("utf-8") + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> ChildEvent:
        try:
            fields = _object(line.decode("utf-8"))
            return cls(kind=EventKind(fields["event"]), seq=int(fields["seq"]), retire=bool(fields["retire"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"not an event line: {line[:200]!r}") from exc


def page_file_name(page_no: int) -> str:
    return f"page-{page_no:05d}.png"


def write_rendered(out_dir: Path, info: DocumentInfo, pages: Sequence[RenderedPageFile | FailedPage]) -> None:
    _write(
        out_dir,
        {
            "outcome": "rendered",
            "kind": info.kind.value,
            "page_count": info.page_count,
            "pages": [
                {
                    "page_no": page.page_no,
                    "file": page.path.name,
                    "width": page.width,
                    "height": page.height,
                    "dpi": page.dpi,
                    "text_layer": page.text_layer,
                }
                for page in pages
                if isinstance(page, RenderedPageFile)
            ],
            "failed_pages": [
                {"page_no": page.page_no, "reason": page.reason.value, "message": page.message}
                for page in pages
                if isinstance(page, FailedPage)
            ],
        },
    )


def write_rejected(out_dir: Path, rejection: InputRejected) -> None:
    _write(out_dir, {"outcome": "rejected", "reason": rejection.reason.value, "message": rejection.message})


def read_manifest(out_dir: Path) -> SandboxResult:
    """The child's result; raises the child's :class:`InputRejected`, or :class:`ManifestError`."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"not a version {MANIFEST_VERSION} manifest")
        outcome = manifest.get("outcome")
        if outcome == "rendered":
            return _rendered(out_dir, manifest)
        if outcome != "rejected":
            raise ManifestError(f"unknown outcome {outcome!r}")
        rejection = InputRejected(ReasonCode(manifest["reason"]), str(manifest["message"]))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"unreadable manifest: {exc!r}") from exc
    raise rejection


def remove_manifest(out_dir: Path) -> None:
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)


def _rendered(out_dir: Path, manifest: dict[str, Any]) -> SandboxResult:
    info = DocumentInfo(kind=DocumentKind(manifest["kind"]), page_count=int(manifest["page_count"]))
    pages = []
    for entry in manifest["pages"]:
        page_no = int(entry["page_no"])
        path = out_dir / page_file_name(page_no)
        if entry["file"] != path.name or not path.is_file():
            raise ManifestError(f"page {page_no} is not at {path}")
        text_layer = entry["text_layer"]
        pages.append(
            RenderedPageFile(
                page_no=page_no,
                path=path,
                width=int(entry["width"]),
                height=int(entry["height"]),
                dpi=int(entry["dpi"]),
                text_layer=None if text_layer is None else str(text_layer),
            )
        )
    failed = [
        FailedPage(
            page_no=int(entry["page_no"]), reason=ReasonCode(entry["reason"]), message=str(entry["message"])
        )
        for entry in manifest.get("failed_pages", [])
    ]
    return SandboxResult(info=info, pages=pages, failed=failed)


def _object(text: str) -> dict[str, Any]:
    fields = json.loads(text)
    if not isinstance(fields, dict):
        raise ValueError("not a JSON object")
    return fields


def _write(out_dir: Path, body: dict[str, Any]) -> None:
    staging = out_dir / f".{MANIFEST_NAME}.partial"
    staging.write_text(json.dumps({"version": MANIFEST_VERSION, **body}), encoding="utf-8")
    os.replace(staging, out_dir / MANIFEST_NAME)
