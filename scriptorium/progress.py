"""Progress bars for long command-line work, drawn on stderr so stdout stays machine-readable.

A bar is only drawn when asked for and when stderr is a terminal. Lines a command prints on
stdout while a bar is live go above the bar when stdout is the same kind of terminal, and
straight to stdout (untouched) when it is piped.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def stderr_console() -> Console:
    """A console on the current stderr that prints text as given: no markup, highlighting or wrapping."""
    return Console(file=sys.stderr, markup=False, highlight=False, emoji=False, soft_wrap=True)


def note(progress: Progress, line: str) -> None:
    """A line on stderr: above the bar while one is drawn, exactly as given otherwise."""
    if progress.live.is_started:
        progress.console.print(line)
    else:
        print(line, file=sys.stderr, flush=True)


def _progress(enabled: bool, *columns: ProgressColumn) -> Progress:
    console = stderr_console()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
        transient=False,
    )


def count_progress(enabled: bool) -> Progress:
    """A bar counting items (pages, files, inputs): ``12/40``."""
    return _progress(enabled, MofNCompleteColumn(), TaskProgressColumn())


def byte_progress(enabled: bool) -> Progress:
    """A bar counting bytes, with the transfer speed."""
    return _progress(enabled, DownloadColumn(), TransferSpeedColumn())


class GrowingCount:
    """One counting task whose total grows as work is discovered (pages of file after file)."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.total = 0
        self.task = progress.add_task(description, total=None)

    def describe(self, description: str) -> None:
        self.progress.update(self.task, description=description)

    def add(self, count: int) -> None:
        self.total += count
        self.progress.update(self.task, total=self.total)

    def advance(self, count: int = 1) -> None:
        self.progress.advance(self.task, count)

    def note(self, line: str) -> None:
        """A line on stderr, above the bar while it is drawn."""
        note(self.progress, line)
