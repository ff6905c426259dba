from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from scriptorium.cli import cli

PAGE_KEYS = {"page_no", "width", "height", "predicted_text_tokens", "mode", "vision_tokens", "reason"}
PAGE_KEYS |= {"source"}


def route(*arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, ["route", *map(str, arguments)], prog_name="scriptorium")


def _json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_json_has_one_object_per_file_with_every_page(
    corpus: Path,
) -> None:
    blank = corpus / "bad-input" / "odd" / "blank.pdf"
    cardinal = corpus / "bad-input" / "odd" / "cardinal.pdf"

    result = route(blank, cardinal, "--json")

    assert result.exit_code == 0
    files = _json_lines(result.stdout)
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
    corpus: Path,
) -> None:
    result = route(corpus / "bad-input" / "odd" / "cardinal.pdf", "--json")

    totals = _json_lines(result.stdout)[0]["totals"]

    assert totals["pages"] == 4
    assert totals["always_gundam_vision_tokens"] > totals["always_base_vision_tokens"] == 4 * 256
    assert totals["routed_vision_tokens"] <= totals["always_gundam_vision_tokens"]


def test_policy_flags_override_the_policy_json(corpus: Path) -> None:
    vector = str(corpus / "bad-input" / "odd" / "vector.pdf")

    result = route(vector, "--json", "--policy", '{"mode": "tiny"}', "--mode", "large")

    page = _json_lines(result.stdout)[0]["pages"][0]
    assert page["mode"] == "large"
    assert page["vision_tokens"] == 400


def test_page_selection_routes_only_those_pages(corpus: Path) -> None:
    result = route(corpus / "bad-input" / "odd" / "cardinal.pdf", "--json", "--pages", "2,4")

    pages = _json_lines(result.stdout)[0]["pages"]
    assert [page["page_no"] for page in pages] == [2, 4]


def test_text_output_lists_pages_and_totals(corpus: Path) -> None:
    result = route(corpus / "bad-input" / "odd" / "vector.pdf")

    out = result.stdout
    assert result.exit_code == 0
    assert "pixels" in out
    assert "always-gundam" in out


def test_an_invalid_policy_is_a_usage_error(corpus: Path) -> None:
    vector = str(corpus / "bad-input" / "odd" / "vector.pdf")

    result = route(vector, "--min-mode", "gundam", "--max-mode", "tiny")

    assert result.exit_code == 2
    assert "invalid policy" in result.stderr


def test_a_rejected_file_is_reported_and_the_rest_still_routed(
    corpus: Path,
) -> None:
    empty = corpus / "bad-input" / "malformed" / "empty.pdf"
    vector = corpus / "bad-input" / "odd" / "vector.pdf"

    captured = route(empty, vector, "--json")

    assert captured.exit_code == 1
    assert "empty" in captured.stderr
    assert [entry["path"] for entry in _json_lines(captured.stdout)] == [str(vector)]


def test_progress_goes_to_a_terminal_stderr_and_stdout_stays_clean(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    cardinal = corpus / "bad-input" / "odd" / "cardinal.pdf"

    text = route(cardinal)
    parsed = route(cardinal, "--json")

    assert text.exit_code == 0
    assert text.stdout.startswith(f"{cardinal}\n")
    assert "4/4" in text.stderr  # the page bar, finished
    assert parsed.stderr == ""  # no bar where the output is parsed
    assert [entry["path"] for entry in _json_lines(parsed.stdout)] == [str(cardinal)]


def test_each_model_family_gets_its_own_forecast(corpus: Path) -> None:
    cardinal = corpus / "bad-input" / "odd" / "cardinal.pdf"

    default = _json_lines(route(cardinal, "--json").stdout)
    both = route(cardinal, "--model-family", "deepseek-ocr", "--model-family", "unlimited-ocr", "--json")

    assert [entry["model"] for entry in default] == ["deepseek-ocr"]
    assert both.exit_code == 0
    forecasts = _json_lines(both.stdout)
    assert [(entry["path"], entry["model"]) for entry in forecasts] == [
        (str(cardinal), "deepseek-ocr"),
        (str(cardinal), "unlimited-ocr"),
    ]
    # Same encoder, modes and tokenizer, and no compression evidence of Unlimited-OCR's own
    # (docs/ROUTING.md): the two forecasts agree page for page.
    assert forecasts[0]["pages"] == forecasts[1]["pages"]
    assert forecasts[0]["totals"] == forecasts[1]["totals"]
    assert route(cardinal, "--model-family", "deepseek-ocr-2").exit_code == 2
    text = route(cardinal, "--model-family", "unlimited-ocr").stdout
    assert text.splitlines()[-1].startswith("total for unlimited-ocr: ")
