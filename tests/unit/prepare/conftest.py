from __future__ import annotations

import csv
from pathlib import Path

import pytest

from scriptorium.settings import PrepareSettings
from tests.support.corpus import require_corpus


@pytest.fixture
def limits() -> PrepareSettings:
    return PrepareSettings()


@pytest.fixture(scope="session")
def bad_input() -> Path:
    return require_corpus("bad-input")


@pytest.fixture(scope="session")
def pdf_real() -> Path:
    return require_corpus("pdf-real")


@pytest.fixture(scope="session")
def user_passwords(bad_input: Path) -> dict[str, str]:
    """File (relative to bad-input) to the password that opens it, from the corpus's passwords.csv."""
    with (bad_input / "passwords.csv").open(encoding="utf-8", newline="") as handle:
        return {row["file"]: row["user_password"] for row in csv.DictReader(handle)}
