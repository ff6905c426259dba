"""HTML tables rendered the way docling renders them in its markdown: spans repeated into every
cell they cover, the first row as the header. Only for comparing with docling's parsed fixtures."""

from __future__ import annotations

import re
from html.parser import HTMLParser

TABLE = re.compile(r"<table>.*?</table>", re.DOTALL)


class _TableReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, int, int]]] = []
        self._cell: list[str] | None = None
        self._spans = (1, 1)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in {"td", "th"}:
            found = dict(attrs)
            self._cell = []
            self._spans = (int(found.get("rowspan") or 1), int(found.get("colspan") or 1))

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None:
            self.rows[-1].append(("".join(self._cell).strip(), *self._spans))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _grid(html: str) -> list[list[str]]:
    reader = _TableReader()
    reader.feed(html)
    grid: dict[tuple[int, int], str] = {}
    for row_index, row in enumerate(reader.rows):
        column = 0
        for text, rowspan, colspan in row:
            while (row_index, column) in grid:
                column += 1
            for down in range(rowspan):
                for across in range(colspan):
                    grid[(row_index + down, column + across)] = text
            column += colspan
    height = max(row for row, _ in grid) + 1
    width = max(column for _, column in grid) + 1
    return [[grid.get((row, column), "") for column in range(width)] for row in range(height)]


def as_pipe_table(html: str) -> str:
    rows = _grid(html)
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" for _ in rows[0]) + " |")
    return "\n".join(lines)


def pipe_tables(markdown: str) -> str:
    return TABLE.sub(lambda match: as_pipe_table(match.group(0)), markdown)
