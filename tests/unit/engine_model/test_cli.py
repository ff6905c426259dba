from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from scriptorium.modes import Mode
from worker.engine.cli import ocr_command, tiny_checkpoint_command
from worker.engine.deepseek.checkpoint import inspect_checkpoint
from worker.engine.deepseek.engine import synthetic_page

CORPUS_PDF = Path("/work/shared/corpus/pdf-real/multi_page.pdf")


@pytest.fixture(autouse=True)
def short_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__MAX_NEW_TOKENS", "5")
    monkeypatch.setenv("SCRIPTORIUM_ENGINE__DEVICE", "cpu")


def test_tiny_checkpoint_command_writes_a_loadable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tiny_checkpoint_command([str(tmp_path / "tiny"), "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "tiny")
    inspect_checkpoint(tmp_path / "tiny")


def test_ocr_prints_one_json_object_per_file(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "page.png"
    synthetic_page(1191, 1684).save(image)
    status = ocr_command(
        [str(image), str(image), "--model", str(tiny_checkpoint), "--mode", "gundam", "--json"]
    )

    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    document = json.loads(lines[0])
    assert document["path"] == str(image)
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


def test_ocr_reads_selected_pdf_pages_as_markdown(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = ocr_command(
        [str(CORPUS_PDF), "--model", str(tiny_checkpoint), "--mode", "tiny", "--pages", "2-3"]
    )
    assert status == 0
    assert capsys.readouterr().out.count("<--- Page Split --->") == 1


def test_ocr_json_for_a_pdf_has_page_sizes_at_the_render_dpi(
    tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        ocr_command(
            [str(CORPUS_PDF), "--model", str(tiny_checkpoint), "--mode", "tiny", "--pages", "1", "--json"]
        )
        == 0
    )
    [page] = json.loads(capsys.readouterr().out)["pages"]
    assert (page["width"], page["height"]) == (1191, 1684)  # A4 at 144 dpi
    assert page["tokens"]["placeholders"] == 73


def test_ocr_reports_a_file_it_cannot_read(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a document")
    assert ocr_command([str(bogus), "--model", str(tiny_checkpoint), "--mode", "tiny"]) == 1
    assert "unsupported" in capsys.readouterr().err


def test_ocr_refuses_a_directory_that_is_not_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "page.png"
    Image.new("RGB", (100, 100), "white").save(image)
    assert ocr_command([str(image), "--model", str(tmp_path)]) == 2
    assert "missing config.json" in capsys.readouterr().err


def test_auto_routes_each_page_and_skips_blank_ones(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "blank.png"
    Image.new("RGB", (1191, 1684), "white").save(blank)
    assert (
        ocr_command([str(CORPUS_PDF), str(blank), "--model", str(tiny_checkpoint), "--pages", "1", "--json"])
        == 0
    )
    document, blank_document = (json.loads(line) for line in capsys.readouterr().out.splitlines())

    [page] = document["pages"]
    assert page["mode"] in {mode.value for mode in Mode}
    assert page["tokens"]["output"] == 5
    [skipped] = blank_document["pages"]
    assert skipped["mode"] is None
    assert "blank" in skipped["skipped"]
