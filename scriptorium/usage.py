"""The usage bill: what the engine read for a tenant, from the append-only usage ledger.

One ledger row is one engine run of a page (an escalation is a second row), so the bill counts
exactly what ran: pages (distinct pages read, at least once, in the group), engine runs,
vision, valid, prompt and output tokens, escalations and engine seconds. A duplicate upload
served from an earlier result has no rows: it cost nothing. Rows are grouped by UTC day, by
mode, by model family, by batch or by document, within ``[start, end)``; each row records the
family that read the page, so any bill can also be narrowed to one model.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import String, cast, distinct, func, select, tuple_
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, UsageEntry
from scriptorium.errors import DomainError

DEFAULT_WINDOW = timedelta(days=30)


class GroupBy(StrEnum):
    DAY = "day"
    MODE = "mode"
    MODEL = "model"
    BATCH = "batch"
    DOCUMENT = "document"


class InvalidWindow(DomainError):
    def __init__(self) -> None:
        super().__init__("invalid_window", "`from` must be before `to`")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def usage_window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """``[start, end)`` in UTC (naive times are UTC): by default the 30 days up to now."""
    end = _utc(end) if end else datetime.now(UTC)
    start = _utc(start) if start else end - DEFAULT_WINDOW
    if start >= end:
        raise InvalidWindow()
    return start, end


@dataclass(frozen=True)
class UsageLine:
    key: str | None  # the day (YYYY-MM-DD), mode, model, batch id or document id; None: no batch
    pages: int
    engine_runs: int
    vision_tokens: int
    valid_tokens: int
    prompt_tokens: int
    output_tokens: int
    escalations: int
    engine_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_key(group_by: GroupBy) -> Any:
    if group_by is GroupBy.DAY:
        return func.to_char(func.timezone("UTC", UsageEntry.created_at), "YYYY-MM-DD")
    if group_by is GroupBy.MODE:
        return UsageEntry.mode
    if group_by is GroupBy.MODEL:
        return UsageEntry.model
    if group_by is GroupBy.BATCH:
        return cast(Document.batch_id, String)
    return cast(UsageEntry.document_id, String)


def _measures() -> tuple[Any, ...]:
    return (
        func.count(distinct(tuple_(UsageEntry.document_id, UsageEntry.page_no))),
        func.count(),
        func.coalesce(func.sum(UsageEntry.vision_tokens), 0),
        func.coalesce(func.sum(UsageEntry.valid_tokens), 0),
        func.coalesce(func.sum(UsageEntry.prompt_tokens), 0),
        func.coalesce(func.sum(UsageEntry.output_tokens), 0),
        func.count().filter(UsageEntry.escalation),
        func.coalesce(func.sum(UsageEntry.engine_seconds), 0.0),
    )


def _line(key: str | None, values: Sequence[Any]) -> UsageLine:
    pages, runs, vision, valid, prompt, output, escalations, seconds = values
    return UsageLine(
        key=key,
        pages=int(pages),
        engine_runs=int(runs),
        vision_tokens=int(vision),
        valid_tokens=int(valid),
        prompt_tokens=int(prompt),
        output_tokens=int(output),
        escalations=int(escalations),
        engine_seconds=round(float(seconds), 4),
    )


def _in_window(
    statement: Any, tenant_id: uuid.UUID, start: datetime, end: datetime, model: str | None
) -> Any:
    statement = statement.where(
        UsageEntry.tenant_id == tenant_id, UsageEntry.created_at >= start, UsageEntry.created_at < end
    )
    return statement if model is None else statement.where(UsageEntry.model == model)


def usage_lines(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    model: str | None = None,
) -> list[UsageLine]:
    """The tenant's usage in ``[start, end)`` (of one model family if ``model`` is given), one line
    per group, ordered by key."""
    key = _group_key(group_by).label("key")
    statement = select(key, *_measures()).select_from(UsageEntry)
    if group_by is GroupBy.BATCH:
        statement = statement.join(Document, Document.id == UsageEntry.document_id)
    statement = (
        _in_window(statement, tenant_id, start, end, model).group_by(key).order_by(key.asc().nulls_last())
    )
    return [_line(row[0], row[1:]) for row in session.execute(statement)]


def usage_total(
    session: Session, tenant_id: uuid.UUID, *, start: datetime, end: datetime, model: str | None = None
) -> UsageLine:
    """The whole window as one line (its pages are distinct over every group)."""
    row = session.execute(
        _in_window(select(*_measures()).select_from(UsageEntry), tenant_id, start, end, model)
    ).one()
    return _line(None, row)


def lines_as_csv(lines: Sequence[UsageLine], group_by: GroupBy) -> str:
    """CSV with a header row; the key column is named after the grouping."""
    columns = [field.name for field in fields(UsageLine)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([group_by.value, *columns[1:]])
    for line in lines:
        values = line.as_dict()
        writer.writerow(["" if line.key is None else line.key, *(values[name] for name in columns[1:])])
    return buffer.getvalue()
