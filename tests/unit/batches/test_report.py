"""The reconciliation report's JSON and CSV renderings."""

from __future__ import annotations

import csv
import io
import json

from scriptorium.batches.report import CSV_COLUMNS, ReportRow, csv_chunks, json_chunks


def _rows(count: int) -> list[ReportRow]:
    return [
        ReportRow(
            seq=i,
            input=f"dir/{i}, with comma.png",
            outcome="failed" if i % 2 else "done",
            reason="corrupt" if i % 2 else None,
            message='the file is "broken"' if i % 2 else None,
            document_id=f"doc-{i}",
            document_state="failed" if i % 2 else "completed",
            duplicate_of=None,
            size_bytes=10 * i,
            sha256="ab" * 32,
            pages_total=1,
            pages_done=0 if i % 2 else 1,
            pages_failed=0,
            vision_tokens=64,
            output_tokens=9,
            attempts=2 if i % 2 else 1,
            previous_documents=["old-a", "old-b"] if i % 2 else [],
        )
        for i in range(1, count + 1)
    ]


def test_csv_has_a_header_and_one_parseable_row_per_input() -> None:
    text = "".join(csv_chunks(iter(_rows(450))))
    table = list(csv.DictReader(io.StringIO(text)))
    assert list(table[0]) == CSV_COLUMNS and len(table) == 450
    assert table[0]["input"] == "dir/1, with comma.png" and table[0]["message"] == 'the file is "broken"'
    assert table[0]["previous_documents"] == "old-a old-b" and table[1]["reason"] == ""


def test_json_streams_a_summary_and_every_row() -> None:
    body = json.loads("".join(json_chunks({"inputs": 3}, iter(_rows(3)))))
    assert body["summary"] == {"inputs": 3}
    assert [row["seq"] for row in body["items"]] == [1, 2, 3]
    assert body["items"][0]["previous_documents"] == ["old-a", "old-b"]
    assert json.loads("".join(json_chunks({}, iter([])))) == {"summary": {}, "items": []}
