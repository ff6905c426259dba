from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scriptorium.settings import PrepareSettings

CORPUS = Path("/work/shared/corpus")
BAD_INPUT = CORPUS / "bad-input"
PDF_REAL = CORPUS / "pdf-real"


@pytest.fixture
def limits() -> PrepareSettings:
    return PrepareSettings()


@pytest.fixture(scope="session")
def bad_input() -> Path:
    if not BAD_INPUT.is_dir():
        pytest.skip(f"the robustness corpus is not at {BAD_INPUT}")
    return BAD_INPUT


@pytest.fixture(scope="session")
def pdf_real() -> Path:
    if not PDF_REAL.is_dir():
        pytest.skip(f"the real-PDF corpus is not at {PDF_REAL}")
    return PDF_REAL


@pytest.fixture(scope="session")
def user_passwords(bad_input: Path) -> dict[str, str]:
    """File (relative to bad-input) to the password that opens it, from the corpus's passwords.csv."""
    with (bad_input / "passwords.csv").open(encoding="utf-8", newline="") as handle:
        return {row["file"]: row["user_password"] for row in csv.DictReader(handle)}
