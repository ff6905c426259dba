"""The fleet's real processes (API, CPU and GPU workers with the test engine, beat): dedup, lanes,
fair share, budgets and concurrency end to end, with every invariant checked in the database."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, Page, UsageEntry
from scriptorium.storage import ObjectStore
from tests.integration.scheduling.conftest import assert_usage_matches_ledger
from tests.support import builders
from tests.support.client import TERMINAL, ApiClient, ids
from tests.support.fleet import ROOT, Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECONDS_PER_PAGE = 0.4
BULK_PDF = Path("bad-input") / "huge" / "pdf2image-memory-error-test-400p.pdf"


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    events = tmp_path_factory.mktemp("engine") / "events.jsonl"
    settings = {
        "FAKE_ENGINE_EVENTS": str(events),
        "FAKE_ENGINE_DELAY_S": str(SECONDS_PER_PAGE),
        "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "2",  # small batches: the order pages are read in shows
    }
    with running_fleet({**env, **settings}, tmp_path_factory.mktemp("fleet")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_gpu_worker()
        fleet.start_beat()
        yield fleet


def _tenant(fleet: Fleet, sessions: sessionmaker[Session]) -> tuple[str, ApiClient]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
        return issued.tenant.name, ApiClient(fleet, issued.key)


def _engine_runs(fleet: Fleet) -> int:
    path = Path(fleet.env["FAKE_ENGINE_EVENTS"])
    return len(path.read_text().splitlines()) if path.exists() else 0


def _ledger_rows(sessions: sessionmaker[Session], document_id: str) -> int:
    with sessions() as session:
        return session.execute(
            select(func.count())
            .select_from(UsageEntry)
            .where(UsageEntry.document_id == uuid.UUID(document_id))
        ).scalar_one()


def _read_after(sessions: sessionmaker[Session], document_id: str, moment: Any) -> int:
    """Pages of a document the engine finished after ``moment``."""
    with sessions() as session:
        return session.execute(
            select(func.count())
            .select_from(Page)
            .where(Page.document_id == uuid.UUID(document_id), Page.finished_at > moment)
        ).scalar_one()


def _finished_at(sessions: sessionmaker[Session], document_id: str) -> Any:
    with sessions() as session:
        found = session.get(Document, uuid.UUID(document_id))
        assert found is not None and found.finished_at is not None
        return found.finished_at


def _wait_state(client: ApiClient, document_id: str, state: str, timeout: float = 120) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: (doc := client.document(document_id))["state"] == state and doc,
        timeout=timeout,
        what=f"document {document_id} to be {state}",
        fleet=client.fleet,
    )
    return body


def _quota(fleet: Fleet, name: str, *options: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "scriptorium.cli", "tenant", "quota", name, *options],
        env=fleet.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def test_a_duplicate_upload_reuses_the_earlier_result_without_engine_work(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    _, client = _tenant(fleet, sessions)
    source = corpus / "pdf-real" / "crazyones.pdf"
    original = client.upload(source)
    assert client.wait_terminal(original["id"])["state"] == "completed"
    runs = _engine_runs(fleet)

    duplicate = client.upload(source)

    assert duplicate["state"] == "completed"  # at once: no preparation, no GPU
    assert client.result_json(duplicate["id"])["pages"] == client.result_json(original["id"])["pages"]
    assert client.document(duplicate["id"])["tokens"]["vision"] == 0
    assert _engine_runs(fleet) == runs and _ledger_rows(sessions, duplicate["id"]) == 0
    fresh = client.upload(source, dedup="false")  # switched off: read again
    assert client.wait_terminal(fresh["id"])["state"] == "completed"
    assert _engine_runs(fleet) == runs + 1
    assert_invariants(sessions, ids(original, duplicate, fresh))


def test_a_duplicate_of_an_unfinished_upload_waits_for_it(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    _, client = _tenant(fleet, sessions)
    source = corpus / "pdf-real" / "normal_4pages.pdf"
    runs = _engine_runs(fleet)
    original = client.upload(source, mode="tiny")
    duplicate = client.upload(source, mode="tiny")
    assert duplicate["state"] == "received"

    assert client.wait_terminal(duplicate["id"])["state"] == "completed"
    assert client.document(original["id"])["state"] == "completed"
    assert client.result_markdown(duplicate["id"]).text == client.result_markdown(original["id"]).text
    assert _engine_runs(fleet) == runs + _ledger_rows(sessions, original["id"])  # read once
    assert _ledger_rows(sessions, duplicate["id"]) == 0
    assert_invariants(sessions, ids(original, duplicate))


def test_an_interactive_upload_overtakes_a_bulk_backlog(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    _, archive = _tenant(fleet, sessions)
    _, person = _tenant(fleet, sessions)
    backlog = archive.upload(corpus / BULK_PDF, pages="1-24", mode="tiny", priority="bulk")
    wait_until(
        lambda: archive.document(backlog["id"])["pages"].get("done", 0) >= 1,
        timeout=120,
        what="the bulk backlog to start",
        fleet=fleet,
    )
    interactive = person.upload(corpus / "pdf-real" / "crazyones.pdf", mode="tiny")

    assert person.wait_terminal(interactive["id"])["state"] == "completed"
    assert archive.wait_terminal(backlog["id"], timeout=180)["state"] == "completed"
    # Without lanes it would have queued behind up to 16 bulk messages (8 batches of 2).
    assert _read_after(sessions, backlog["id"], _finished_at(sessions, interactive["id"])) >= 8
    assert_invariants(sessions, ids(backlog, interactive))


def test_two_tenants_with_backlogs_share_the_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    _, big = _tenant(fleet, sessions)
    _, small = _tenant(fleet, sessions)
    large = big.upload(corpus / BULK_PDF, pages="1-24", mode="tiny", priority="bulk")
    wait_until(
        lambda: big.document(large["id"])["pages"].get("done", 0) >= 1,
        timeout=120,
        what="the large backlog to start",
        fleet=fleet,
    )
    modest = small.upload(corpus / BULK_PDF, pages="30-33", mode="tiny", priority="bulk")

    assert small.wait_terminal(modest["id"])["state"] == "completed"
    assert big.wait_terminal(large["id"], timeout=180)["state"] == "completed"
    # The late tenant's pages took turns with the large backlog instead of waiting behind it
    # (behind all of it, none would be read after; the worker claims at most one batch ahead).
    assert _read_after(sessions, large["id"], _finished_at(sessions, modest["id"])) >= 6
    assert_invariants(sessions, ids(large, modest))


def test_a_page_budget_pauses_a_document_until_the_operator_raises_it(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    name, client = _tenant(fleet, sessions)
    assert _quota(fleet, name, "--pages", "2")["page_budget"] == 2
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="tiny")

    paused = _wait_state(client, document["id"], "paused")
    assert paused["error"]["code"] == "page_budget_exhausted"
    assert paused["pages"].get("done", 0) + paused["pages"].get("skipped", 0) <= 2
    quota = client.http.get("/v1/quota").json()
    assert quota["pages_left"] == 0 and quota["documents_paused"] == {"page_budget_exhausted": 1}

    shown = _quota(fleet, name, "--pages", "none")
    assert shown["page_budget"] is None
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "completed" and finished["error"] is None
    with sessions() as session:
        tenant_id = session.get(Document, uuid.UUID(document["id"])).tenant_id  # type: ignore[union-attr]
    assert_usage_matches_ledger(sessions, tenant_id)
    assert_invariants(sessions, ids(document))


def test_documents_over_the_concurrency_limit_wait_their_turn(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    name, client = _tenant(fleet, sessions)
    _quota(fleet, name, "--max-concurrent", "1")
    first = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="tiny")
    second = client.upload(corpus / "pdf-real" / "crazyones.pdf", mode="tiny")

    held = _wait_state(client, second["id"], "paused")
    assert held["error"]["code"] == "concurrency_limit"
    assert client.document(first["id"])["state"] not in TERMINAL
    finished = [client.wait_terminal(document["id"]) for document in (first, second)]
    assert [document["state"] for document in finished] == ["completed", "completed"]
    assert finished[1]["started_at"] >= finished[0]["finished_at"]
    assert_invariants(sessions, ids(first, second))
