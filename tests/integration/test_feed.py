"""The GPU worker's feed: batch messages, prefetching the next batch, and faults around it."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page, UsageEntry
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SAMPLE = ("pdf-real", "normal_4pages.pdf")


@pytest.fixture
def fleet(env: dict[str, str], store: ObjectStore, tmp_path: Path) -> Iterator[Fleet]:
    settings = {
        "FAKE_ENGINE_EVENTS": str(tmp_path / "events.jsonl"),
        "SCRIPTORIUM_ENGINE__MAX_BATCH_PAGES": "2",
    }
    with running_fleet({**env, **settings}, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_beat()
        yield fleet


def _log_lines(fleet: Fleet, name: str) -> list[dict[str, object]]:
    process = next(p for p in fleet.processes if p.name == name)
    lines = []
    for line in process.log().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def _prefetched(fleet: Fleet, name: str) -> bool:
    return any(line.get("event") == "batch.prefetched" for line in _log_lines(fleet, name))


def test_a_worker_drains_batches_it_prefetched_and_each_page_is_read_once(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path, tmp_path: Path
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    documents = [client.upload(corpus.joinpath(*SAMPLE), mode="tiny", dedup="false") for _ in range(3)]
    wait_until(
        lambda: all(client.document(d["id"])["pages_total"] == 4 for d in documents),
        timeout=120,
        what="the documents to be prepared",
        fleet=fleet,
    )
    fleet.start_gpu_worker(
        engine_env={"FAKE_ENGINE_BATCH_DELAY_S": "0.3", "FAKE_ENGINE_PREPROCESS_S": "0.01"}
    )
    for document in documents:
        assert client.wait_terminal(document["id"], timeout=180)["state"] == "completed"
    assert _prefetched(fleet, "worker-gpu"), "the worker never claimed a batch ahead"
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert len(events) == 12
    assert all(event["prepared_ahead"] for event in events), "the engine prepared a page on its own time"
    with sessions() as session:
        runs = session.execute(
            select(func.count()).select_from(UsageEntry).where(UsageEntry.document_id.in_(ids(*documents)))
        ).scalar_one()
    assert runs == 12  # every page read once: no batch message made a page run twice
    assert_invariants(sessions, ids(*documents))


def test_a_worker_killed_while_a_batch_is_prefetched_loses_nothing(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    documents = [client.upload(corpus.joinpath(*SAMPLE), mode="tiny", dedup="false") for _ in range(2)]
    wait_until(
        lambda: all(client.document(d["id"])["pages_total"] == 4 for d in documents),
        timeout=120,
        what="the documents to be prepared",
        fleet=fleet,
    )
    worker = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_BATCH_DELAY_S": "3"})
    wait_until(lambda: _prefetched(fleet, "worker-gpu"), timeout=60, what="a prefetched batch", fleet=fleet)
    with sessions() as session:
        held = session.execute(
            select(func.count()).select_from(Page).where(Page.state == "running")
        ).scalar_one()
    assert held >= 3  # the batch on the engine and the one claimed ahead
    worker.kill_group(signal.SIGKILL)

    fleet.start_gpu_worker("worker-gpu-2")
    for document in documents:
        assert client.wait_terminal(document["id"], timeout=180)["state"] == "completed"
    with sessions() as session:
        pages = list(session.execute(select(Page).where(Page.document_id.in_(ids(*documents)))).scalars())
    assert all(page.state == "done" and len(page.ocr_attempts) == 1 for page in pages)
    assert_invariants(sessions, ids(*documents))
