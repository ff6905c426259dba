from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from scriptorium.cli import cli
from scriptorium.model_families import ModelFamily
from scriptorium.modes import Mode
from worker.engine.deepseek.checkpoint import inspect_checkpoint
from worker.engine.deepseek.engine import synthetic_page
from worker.engine.deepseek.loader import read_architecture


def scriptorium(*arguments: str) -> Result:
    return CliRunner().invoke(cli, list(arguments), prog_name="scriptorium")


@pytest.fixture
def corpus_pdf(corpus: Path) -> Path:
    return corpus / "pdf-real" / "multi_page.pdf"


@pytest.fixture(autouse=True)
def short_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__MAX_NEW_TOKENS", "5")
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__DEVICE", "cpu")


def test_tiny_checkpoint_command_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    result = scriptorium("dev", "tiny-checkpoint", str(tmp_path / "tiny"), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "tiny")
    assert read_architecture(inspect_checkpoint(tmp_path / "tiny")).family is ModelFamily.DEEPSEEK_OCR


def test_tiny_checkpoint_command_writes_the_requested_family(tmp_path: Path) -> None:
    result = scriptorium("dev", "tiny-checkpoint", str(tmp_path / "tiny"), "--family", "unlimited-ocr")
    assert result.exit_code == 0, result.output
    assert read_architecture(inspect_checkpoint(tmp_path / "tiny")).family is ModelFamily.UNLIMITED_OCR
    refused = scriptorium("dev", "tiny-checkpoint", str(tmp_path / "other"), "--family", "deepseek-ocr-2")
    assert refused.exit_code == 2


def test_ocr_prints_one_json_object_per_file(
    tmp_path: Path, tiny_checkpoint: Path, family: ModelFamily
) -> None:
    image = tmp_path / "page.png"
    synthetic_page(1191, 1684).save(image)
    result = scriptorium(
        "ocr", str(image), str(image), "--model", str(tiny_checkpoint), "--mode", "gundam", "--json"
    )

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    document = json.loads(lines[0])
    assert document["path"] == str(image)
    assert document["model"] == family.value  # detected from the checkpoint, no flag given
    assert document["model_revision"].startswith(f"{family.value}-")
    assert json.loads(lines[1])["model_revision"] == document["model_revision"]
    [page] = document["pages"]
    assert set(page) == {
        "page_no",
        "width",
        "height",
        "mode",
        "grid",
        "tokens",
        "finished",
        "markdown",
        "blocks",
    }
    assert (page["page_no"], page["width"], page["height"], page["mode"], page["grid"]) == (
        1,
        1191,
        1684,
        "gundam",
        [2, 3],
    )
    assert page["tokens"]["vision"] == 856
    assert page["tokens"]["placeholders"] == 903
    assert page["tokens"]["valid"] == 782
    assert page["tokens"]["output"] == 5
    assert page["finished"] is False
    assert isinstance(page["blocks"], list)


def test_ocr_reads_selected_pdf_pages_as_markdown_with_a_page_bar_on_a_terminal(
    corpus_pdf: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats stderr as a terminal
    result = scriptorium(
        "ocr", str(corpus_pdf), "--model", str(tiny_checkpoint), "--mode", "tiny", "--pages", "2-3"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("<--- Page Split --->") == 1
    assert "2/2" in result.stderr  # the bar stays on stderr; stdout is the markdown alone


def test_ocr_json_for_a_pdf_has_page_sizes_at_the_render_dpi(corpus_pdf: Path, tiny_checkpoint: Path) -> None:
    result = scriptorium(
        "ocr", str(corpus_pdf), "--model", str(tiny_checkpoint), "--mode", "tiny", "--pages", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    [page] = json.loads(result.stdout)["pages"]
    assert (page["width"], page["height"]) == (1191, 1684)  # A4 at 144 dpi
    assert page["tokens"]["placeholders"] == 73


def test_ocr_reports_a_file_it_cannot_read(tmp_path: Path, tiny_checkpoint: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a document")
    result = scriptorium("ocr", str(bogus), "--model", str(tiny_checkpoint), "--mode", "tiny")
    assert result.exit_code == 1
    assert "unsupported" in result.stderr
    assert result.stdout == ""


def test_ocr_refuses_a_directory_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    image = tmp_path / "page.png"
    Image.new("RGB", (100, 100), "white").save(image)
    result = scriptorium("ocr", str(image), "--model", str(tmp_path))
    assert result.exit_code == 2
    assert "missing config.json" in result.stderr


def test_auto_routes_each_page_and_skips_blank_ones(
    tmp_path: Path, corpus_pdf: Path, tiny_checkpoint: Path
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (1191, 1684), "white").save(blank)
    result = scriptorium(
        "ocr", str(corpus_pdf), str(blank), "--model", str(tiny_checkpoint), "--pages", "1", "--json"
    )
    assert result.exit_code == 0, result.output
    document, blank_document = (json.loads(line) for line in result.stdout.splitlines())

    [page] = document["pages"]
    assert page["mode"] in {mode.value for mode in Mode}
    assert page["tokens"]["output"] == 5
    [skipped] = blank_document["pages"]
    assert skipped["mode"] is None
    assert "blank" in skipped["skipped"]
