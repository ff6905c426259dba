"""The one corpus locator: present folders are returned, missing ones skip locally and fail under CI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ci import running_in_ci
from tests.support.corpus import CHECKOUT, CORPUS, require_corpus


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " on "])
def test_ci_is_on_for_true_values(value: str) -> None:
    assert running_in_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off"])
def test_ci_is_off_otherwise(value: str) -> None:
    assert not running_in_ci({"CI": value})
    assert not running_in_ci({})


def test_a_present_folder_is_returned(tmp_path: Path) -> None:
    (tmp_path / "pdf-real").mkdir()
    for environ in ({}, {"CI": "true"}):
        assert require_corpus("pdf-real", root=tmp_path, environ=environ) == tmp_path / "pdf-real"


def test_a_missing_corpus_skips_on_a_developer_machine(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"not at .*bad-input"):
        require_corpus("bad-input", root=tmp_path, environ={"CI": "false"})


def test_a_missing_corpus_fails_under_ci(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"not at .*bad-input.*CI"):
        require_corpus("bad-input", root=tmp_path, environ={"CI": "true"})


def test_a_file_is_not_a_corpus_folder(tmp_path: Path) -> None:
    (tmp_path / "pdf-real").write_bytes(b"")
    with pytest.raises(pytest.fail.Exception):
        require_corpus("pdf-real", root=tmp_path, environ={"CI": "1"})


def test_the_corpus_lies_beside_the_checkout() -> None:
    assert (CHECKOUT / "pyproject.toml").is_file()
    assert CHECKOUT.parent / "shared" / "corpus" == CORPUS
