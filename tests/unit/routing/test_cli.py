from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from worker.routing.cli import route_command

PAGE_KEYS = {"page_no", "width", "height", "predicted_text_tokens", "mode", "vision_tokens", "reason"}
PAGE_KEYS |= {"source"}


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_json_has_one_object_per_file_with_every_page(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = corpus / "bad-input" / "odd" / "blank.pdf"
    cardinal = corpus / "bad-input" / "odd" / "cardinal.pdf"

    status = route_command([str(blank), str(cardinal), "--json"])

    assert status == 0
    files = _json_lines(capsys.readouterr().out)
    assert [entry["path"] for entry in files] == [str(blank), str(cardinal)]
    blank_pages, cardinal_pages = files[0]["pages"], files[1]["pages"]
    assert [page["page_no"] for page in cardinal_pages] == [1, 2, 3, 4]
    for page in [*blank_pages, *cardinal_pages]:
        assert page.keys() >= PAGE_KEYS
        assert page["source"] in {"text_layer", "pixels"}
    assert blank_pages[0]["mode"] == "skip"
    assert blank_pages[0]["vision_tokens"] == 0
    rotated, upright = cardinal_pages[1], cardinal_pages[0]
    assert (rotated["width"], rotated["height"]) == (upright["height"], upright["width"])
    assert rotated["mode"] == upright["mode"] != "skip"


def test_totals_compare_against_always_base_and_always_gundam(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    route_command([str(corpus / "bad-input" / "odd" / "cardinal.pdf"), "--json"])

    totals = _json_lines(capsys.readouterr().out)[0]["totals"]

    assert totals["pages"] == 4
    assert totals["always_gundam_vision_tokens"] > totals["always_base_vision_tokens"] == 4 * 256
    assert totals["routed_vision_tokens"] <= totals["always_gundam_vision_tokens"]


def test_policy_flags_override_the_policy_json(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector = str(corpus / "bad-input" / "odd" / "vector.pdf")

    route_command([vector, "--json", "--policy", '{"mode": "tiny"}', "--mode", "large"])

    page = _json_lines(capsys.readouterr().out)[0]["pages"][0]
    assert page["mode"] == "large"
    assert page["vision_tokens"] == 400


def test_page_selection_routes_only_those_pages(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    route_command([str(corpus / "bad-input" / "odd" / "cardinal.pdf"), "--json", "--pages", "2,4"])

    pages = _json_lines(capsys.readouterr().out)[0]["pages"]
    assert [page["page_no"] for page in pages] == [2, 4]


def test_text_output_lists_pages_and_totals(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = route_command([str(corpus / "bad-input" / "odd" / "vector.pdf")])

    out = capsys.readouterr().out
    assert status == 0
    assert "pixels" in out
    assert "always-gundam" in out


def test_an_invalid_policy_is_a_usage_error(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vector = str(corpus / "bad-input" / "odd" / "vector.pdf")

    status = route_command([vector, "--min-mode", "gundam", "--max-mode", "tiny"])

    assert status == 2
    assert "invalid policy" in capsys.readouterr().err


def test_a_rejected_file_is_reported_and_the_rest_still_routed(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = corpus / "bad-input" / "malformed" / "empty.pdf"
    vector = corpus / "bad-input" / "odd" / "vector.pdf"

    status = route_command([str(empty), str(vector), "--json"])

    captured = capsys.readouterr()
    assert status == 1
    assert "empty" in captured.err
    assert [entry["path"] for entry in _json_lines(captured.out)] == [str(vector)]
