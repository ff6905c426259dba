"""Progress bars draw only on a terminal stderr; lines printed beside them keep their text."""

from __future__ import annotations

import pytest

from scriptorium.progress import GrowingCount, count_progress


def test_without_a_terminal_no_bar_is_drawn_and_notes_are_printed_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with count_progress(True) as progress:
        pages = GrowingCount(progress, "pages")
        pages.add(3)
        pages.advance(3)
        pages.note("failed\tscan:one:.pdf\t[bold]x[/bold]")
    captured = capsys.readouterr()
    assert captured.err == "failed\tscan:one:.pdf\t[bold]x[/bold]\n"
    assert captured.out == ""


def test_on_a_terminal_the_bar_counts_on_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    with count_progress(True) as progress:
        pages = GrowingCount(progress, "pages")
        pages.add(2)
        pages.add(3)
        pages.advance(5)
    captured = capsys.readouterr()
    assert "5/5" in captured.err and "pages" in captured.err
    assert captured.out == ""


def test_a_bar_that_is_not_wanted_is_not_drawn_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    with count_progress(False) as progress:
        GrowingCount(progress, "pages").add(2)
    assert capsys.readouterr().err == ""
