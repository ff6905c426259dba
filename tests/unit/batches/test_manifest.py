"""Manifest lines: valid ones become inputs with options, invalid ones become rejected inputs."""

from __future__ import annotations

import json

import pytest

from scriptorium.batches.manifest import decode_manifest, iter_manifest, parse_line
from scriptorium.batches.states import IntakeReason, IntakeRefused
from scriptorium.states import Lane


def test_a_line_names_an_object_and_its_options() -> None:
    line = {
        "uri": "s3://Archive/scans/1931/0001.pdf",
        "pages": "1-3",
        "mode": "base",
        "task": "free_ocr",
        "policy": {"max_mode": "large"},
        "metadata": {"box": 7},
        "priority": "interactive",
        "dedup": False,
    }
    parsed = parse_line(4, json.dumps(line))
    assert (
        parsed is not None
        and parsed.refusal is None
        and parsed.ref is not None
        and parsed.options is not None
    )
    assert (parsed.ref.source, parsed.ref.bucket, parsed.ref.key) == ("archive", "scans", "1931/0001.pdf")
    assert parsed.name == "s3://Archive/scans/1931/0001.pdf"
    assert parsed.options.pages == "1-3" and parsed.options.priority is Lane.INTERACTIVE
    assert parsed.options.metadata == {"box": 7} and parsed.options.dedup is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ('["s3://a/b/c"]', '"uri"'),
        ('{"uri": "http://a/b/c"}', "s3://"),
        ('{"uri": "s3://a/b"}', "s3://source/bucket/key"),
        ('{"uri": "s3://a/b/c", "colour": "red"}', "colour"),
        ('{"uri": "s3://a/b/c", "task": "poetry"}', "task"),
        ('{"uri": "s3://a/b/c/../d"}', "segment"),
        ('{"uri": "s3://a/b//etc/passwd"}', "absolute"),
        ('{"uri": "s3://a/b/c\\u0000d"}', "control characters"),
        ('{"uri": "s3://a/b/c", "metadata": {"n": "\\u0000"}}', "NUL"),
        ('{"uri": "\u0000"}', "not valid JSON"),
    ],
)
def test_a_bad_line_is_a_rejected_input_with_a_reason(text: str, fragment: str) -> None:
    parsed = parse_line(9, text)
    assert parsed is not None and parsed.refusal is not None
    assert parsed.refusal.reason is IntakeReason.INVALID_MANIFEST_LINE
    assert "line 9" in parsed.refusal.message and fragment in parsed.refusal.message
    assert "\x00" not in parsed.name


def test_blank_lines_are_not_inputs_and_line_numbers_are_kept() -> None:
    lines = decode_manifest(b'\xef\xbb\xbf{"uri": "s3://a/b/1"}\n\n   \n{"uri": "s3://a/b/2"}\n')
    parsed = list(iter_manifest(lines, start=0))
    assert [(p.line_no, p.name) for p in parsed] == [(1, "s3://a/b/1"), (4, "s3://a/b/2")]
    assert [p.line_no for p in iter_manifest(lines, start=1)] == [4]


def test_a_manifest_that_is_not_text_is_refused() -> None:
    with pytest.raises(IntakeRefused) as refused:
        decode_manifest(b"\xff\xfe\x00garbage")
    assert refused.value.reason is IntakeReason.INVALID_MANIFEST
