"""Manifest batches: one JSON object per line naming an object and, optionally, its own options.

    {"uri": "s3://archive/scans/1931/0001.pdf", "pages": "1-3", "mode": "base",
     "task": "markdown", "policy": {"max_mode": "large"}, "metadata": {"box": 7}}

``uri`` names a configured source, a bucket and a key. Blank lines are ignored. A line that is
not valid is not fatal: it becomes a rejected input with the reason, so the report accounts for
every line — a key no input may name (NUL or control characters, ``..``, ``.`` or empty
segments, an absolute or over-long key) and a NUL anywhere in the line included; the name the
report shows has its control characters escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from scriptorium.acceptance import DocumentOptions, OptionsRejected
from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.sources import ObjectRef, parse_s3_uri, printable

MAX_LINE_CHARS = 64 * 1024


@dataclass(frozen=True)
class ManifestLine:
    line_no: int  # 1-based line of the manifest
    name: str  # what the report calls this input: the URI, or the raw line when it is unreadable
    ref: ObjectRef | None = None
    options: DocumentOptions | None = None
    refusal: IntakeRefused | None = None


def decode_manifest(data: bytes) -> list[str]:
    """The manifest's lines; IntakeRefused(invalid_manifest) when it is not UTF-8 text."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise IntakeRefused(
            IntakeReason.INVALID_MANIFEST, f"the manifest is not UTF-8 text: {error}"
        ) from error
    return text.splitlines()


def parse_line(line_no: int, line: str) -> ManifestLine | None:
    """One input, or None for a blank line."""
    stripped = line.strip()
    if not stripped:
        return None
    try:
        uri, ref, options = _parse_object(stripped)
    except _BadLine as bad:
        refusal = IntakeRefused(IntakeReason.INVALID_MANIFEST_LINE, f"line {line_no}: {bad.message}")
        return ManifestLine(line_no=line_no, name=bad.name, refusal=refusal)
    return ManifestLine(line_no=line_no, name=uri, ref=ref, options=options)


class _BadLine(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.message = message


def _holds_nul(value: Any) -> bool:
    """Whether a NUL hides anywhere in a parsed JSON value (no database text can hold one)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


def _parse_object(text: str) -> tuple[str, ObjectRef, DocumentOptions]:
    label = printable(text[:200])
    if len(text) > MAX_LINE_CHARS:
        raise _BadLine(label, f"longer than {MAX_LINE_CHARS} characters")
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise _BadLine(label, f"not valid JSON: {error.msg}") from error
    if not isinstance(value, dict) or not isinstance(value.get("uri"), str):
        raise _BadLine(label, 'not a JSON object with a "uri" string')
    uri = value.pop("uri")
    if _holds_nul(value):
        raise _BadLine(printable(uri), "a value contains a NUL character")
    try:
        return uri, parse_s3_uri(uri), DocumentOptions.parse(value)
    except IntakeRefused as refused:
        raise _BadLine(printable(uri), refused.message) from refused
    except OptionsRejected as rejected:
        raise _BadLine(printable(uri), rejected.message) from rejected


def iter_manifest(lines: list[str], *, start: int) -> Iterator[ManifestLine]:
    """Inputs from line index ``start`` (0-based) on, blank lines left out."""
    for index in range(start, len(lines)):
        parsed = parse_line(index + 1, lines[index])
        if parsed is not None:
            yield parsed
