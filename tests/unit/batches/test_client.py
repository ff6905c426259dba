"""The bulk-ingest client's local pieces: which files go in under which names, and what it prints."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scriptorium.client import batch_key, collect_files, describe, document_fields, sha256_of


def test_files_are_named_relative_to_the_directory_given(tmp_path: Path) -> None:
    (tmp_path / "box" / "1931").mkdir(parents=True)
    (tmp_path / "box" / "1931" / "b.pdf").write_bytes(b"b")
    (tmp_path / "box" / "a.png").write_bytes(b"a")
    single = tmp_path / "single.tif"
    single.write_bytes(b"s")
    found = collect_files([tmp_path / "box", single, tmp_path / "missing.pdf"])
    assert [(path.name, name) for path, name in found] == [
        ("b.pdf", "1931/b.pdf"),
        ("a.png", "a.png"),
        ("single.tif", "single.tif"),
    ]


def test_the_batch_key_is_stable_per_name_and_header_safe() -> None:
    assert batch_key("scans 1931 – Ø") == batch_key("scans 1931 – Ø")
    assert batch_key("a") != batch_key("b")
    assert batch_key("scans 1931 – Ø").isascii() and len(batch_key("x" * 500)) < 64


def test_content_hashes_match_the_api(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"%PDF-1.7 hello")
    assert sha256_of(path) == hashlib.sha256(b"%PDF-1.7 hello").hexdigest()


def test_only_the_options_given_are_sent() -> None:
    assert document_fields(mode="", task="markdown", pages=None, priority=None) == {"task": "markdown"}
    assert document_fields(mode="base", task="free_ocr", pages="1-2", priority="bulk") == {
        "task": "free_ocr",
        "mode": "base",
        "pages": "1-2",
        "priority": "bulk",
    }
    assert document_fields(mode="", task="markdown", pages=None, priority=None, model="unlimited-ocr") == {
        "task": "markdown",
        "model": "unlimited-ocr",
    }


def test_a_batch_is_described_in_one_line() -> None:
    line = describe(
        {
            "id": "b1",
            "name": "scans",
            "state": "running",
            "round": 2,
            "progress": {"inputs": 10, "finished": 7, "inputs_complete": False},
            "outcomes": {"done": 6, "failed": 1, "pending": 0, "in_progress": 3},
            "tokens": {"vision": 640, "output": 90},
            "error": None,
        }
    )
    assert "7/10 inputs final (still discovering)" in line and "done 6, failed 1, in_progress 3" in line
    assert "round 2" in line and "pending" not in line and "model" not in line


def test_a_batch_s_line_names_its_model_when_it_chose_one() -> None:
    batch = {
        "id": "b1",
        "name": "scans",
        "state": "running",
        "round": 1,
        "options": {"model": "unlimited-ocr"},
        "progress": {"inputs": 1, "finished": 0, "inputs_complete": True},
        "outcomes": {},
        "tokens": {"vision": 0, "output": 0},
        "error": None,
    }
    assert "model unlimited-ocr;" in describe(batch)
