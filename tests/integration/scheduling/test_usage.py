"""The usage bill from the ledger: grouped by day, mode, batch and document; totals; CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.batches.states import BatchKind, BatchState
from scriptorium.db.models import Batch, Document, Tenant
from scriptorium.usage import GroupBy, UsageLine, lines_as_csv, usage_lines, usage_total
from tests.integration.scheduling.conftest import backlog, dispatch, new_tenant, read_page
from tests.support.builders import attempt

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("quiet_queue")]


@pytest.fixture
def billed(db_sessions: sessionmaker[Session]) -> tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A tenant with two documents read: one in a batch with an escalated page, one outside."""
    owner = new_tenant(db_sessions)
    batched = backlog(db_sessions, owner, pages=2, mode="tiny")
    loose = backlog(db_sessions, owner, pages=1)
    with db_sessions.begin() as session:
        batch = Batch(
            tenant_id=owner.id,
            name="archive",
            kind=BatchKind.UPLOADS,
            state=BatchState.RUNNING,
            source={},
            options={},
        )
        session.add(batch)
        session.flush()
        session.get(Document, batched).batch_id = batch.id  # type: ignore[union-attr]
        batch_id = batch.id
    dispatch(db_sessions, depth=8)
    assert read_page(
        db_sessions,
        batched,
        1,
        attempt(output=700, mode="tiny"),
        attempt(output=600, mode="small", escalation=True),
    )
    assert read_page(db_sessions, batched, 2, attempt(output=30, mode="tiny"))
    assert read_page(db_sessions, loose, 1, attempt(output=50, mode="base"))
    return owner, batch_id, batched, loose


def _window() -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(hours=1), now + timedelta(hours=1)


def _by_key(lines: list[UsageLine]) -> dict[str | None, UsageLine]:
    return {line.key: line for line in lines}


def test_usage_by_mode_counts_each_engine_run_where_it_ran(
    db_sessions: sessionmaker[Session], billed: tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    owner = billed[0]
    start, end = _window()
    with db_sessions() as session:
        lines = _by_key(usage_lines(session, owner.id, start=start, end=end, group_by=GroupBy.MODE))
    assert set(lines) == {"tiny", "small", "base"}
    assert (lines["tiny"].pages, lines["tiny"].engine_runs, lines["tiny"].vision_tokens) == (2, 2, 128)
    assert (lines["small"].pages, lines["small"].escalations, lines["small"].output_tokens) == (1, 1, 600)
    assert (lines["base"].pages, lines["base"].vision_tokens, lines["base"].escalations) == (1, 256, 0)


def test_usage_by_document_and_by_batch(
    db_sessions: sessionmaker[Session], billed: tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    owner, batch_id, batched, loose = billed
    start, end = _window()
    with db_sessions() as session:
        documents = _by_key(usage_lines(session, owner.id, start=start, end=end, group_by=GroupBy.DOCUMENT))
        batches = usage_lines(session, owner.id, start=start, end=end, group_by=GroupBy.BATCH)
        totals = {
            document.id: (document.vision_tokens, document.output_tokens, document.escalations)
            for document in session.execute(select(Document).where(Document.tenant_id == owner.id)).scalars()
        }
    for document_id in (batched, loose):  # the bill agrees with the documents' own totals
        line = documents[str(document_id)]
        assert (line.vision_tokens, line.output_tokens, line.escalations) == totals[document_id]
    assert [(line.key, line.pages, line.engine_runs) for line in batches] == [
        (str(batch_id), 2, 3),
        (None, 1, 1),
    ]


def test_usage_by_day_and_the_total(
    db_sessions: sessionmaker[Session], billed: tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    owner = billed[0]
    start, end = _window()
    with db_sessions() as session:
        days = usage_lines(session, owner.id, start=start, end=end, group_by=GroupBy.DAY)
        total = usage_total(session, owner.id, start=start, end=end)
        today = session.execute(
            select(func.to_char(func.timezone("UTC", func.now()), "YYYY-MM-DD"))
        ).scalar_one()
        assert (
            usage_lines(session, owner.id, start=end, end=end + timedelta(days=1), group_by=GroupBy.DAY) == []
        )
    assert [line.key for line in days] == [today]
    assert (total.pages, total.engine_runs, total.escalations) == (3, 4, 1)
    assert (total.vision_tokens, total.output_tokens) == (64 + 100 + 64 + 256, 700 + 600 + 30 + 50)
    assert total.engine_seconds == pytest.approx(4 * 0.25)
    assert days[0].as_dict() | {"key": None} == total.as_dict()


def test_usage_is_per_tenant(
    db_sessions: sessionmaker[Session], billed: tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    start, end = _window()
    with db_sessions() as session:
        assert (
            usage_lines(session, new_tenant(db_sessions).id, start=start, end=end, group_by=GroupBy.MODE)
            == []
        )


def test_usage_as_csv(
    db_sessions: sessionmaker[Session], billed: tuple[Tenant, uuid.UUID, uuid.UUID, uuid.UUID]
) -> None:
    owner = billed[0]
    start, end = _window()
    with db_sessions() as session:
        lines = usage_lines(session, owner.id, start=start, end=end, group_by=GroupBy.BATCH)
    rows = list(csv.DictReader(io.StringIO(lines_as_csv(lines, GroupBy.BATCH))))
    assert list(rows[0]) == [
        "batch",
        "pages",
        "engine_runs",
        "vision_tokens",
        "valid_tokens",
        "prompt_tokens",
        "output_tokens",
        "escalations",
        "engine_seconds",
    ]
    assert [(row["batch"], row["pages"]) for row in rows] == [(str(billed[1]), "2"), ("", "1")]
