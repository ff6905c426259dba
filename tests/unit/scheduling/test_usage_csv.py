import csv
import io

from scriptorium.usage import GroupBy, UsageLine, lines_as_csv


def _line(key: str | None, pages: int) -> UsageLine:
    return UsageLine(
        key=key,
        pages=pages,
        engine_runs=pages + 1,
        vision_tokens=64 * pages,
        valid_tokens=60 * pages,
        prompt_tokens=85 * pages,
        output_tokens=10 * pages,
        escalations=1,
        engine_seconds=0.125,
    )


def test_csv_names_the_key_column_after_the_grouping_and_leaves_a_missing_key_empty() -> None:
    text = lines_as_csv([_line("2026-11-28", 3), _line(None, 1)], GroupBy.DAY)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "day" and rows[0][1:3] == ["pages", "engine_runs"]
    assert rows[1] == ["2026-11-28", "3", "4", "192", "180", "255", "30", "1", "0.125"]
    assert rows[2][0] == ""
    assert text.endswith("\n") and "\r" not in text


def test_an_empty_report_is_just_the_header() -> None:
    assert lines_as_csv([], GroupBy.MODE).splitlines() == [
        "mode,pages,engine_runs,vision_tokens,valid_tokens,prompt_tokens,output_tokens,escalations,engine_seconds"
    ]
