"""The fleet's metrics: recording helpers, the backlog from Postgres, and the API's /metrics."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium import metrics
from scriptorium.db.migrate import upgrade
from scriptorium.db.models import GpuWorker
from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.settings import DatabaseSettings, Settings
from scriptorium.states import DocumentState, PageState
from tests.support import builders
from tests.support.services import postgres_database


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_engine_run_counts_tokens_and_time_by_mode() -> None:
    before = (
        sample("scriptorium_engine_runs_total", mode="gundam"),
        sample("scriptorium_vision_tokens_total", mode="gundam"),
        sample("scriptorium_output_tokens_total", mode="gundam"),
        sample("scriptorium_engine_seconds_count", mode="gundam"),
        sample("scriptorium_engine_seconds_bucket", mode="gundam", le="4.0"),
    )
    metrics.observe_engine_run("gundam", vision_tokens=856, output_tokens=3100, seconds=3.5)
    after = (
        sample("scriptorium_engine_runs_total", mode="gundam"),
        sample("scriptorium_vision_tokens_total", mode="gundam"),
        sample("scriptorium_output_tokens_total", mode="gundam"),
        sample("scriptorium_engine_seconds_count", mode="gundam"),
        sample("scriptorium_engine_seconds_bucket", mode="gundam", le="4.0"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 856, 3100, 1, 1]


def test_pages_escalations_and_preparation_are_counted() -> None:
    done = sample("scriptorium_pages_total", mode="small", outcome="done")
    seconds = sample("scriptorium_page_seconds_sum", mode="small")
    escalated = sample("scriptorium_escalations_total", from_mode="tiny", to_mode="small")
    rejections = {"outcome": "rejected", "reason": "encrypted"}
    rejected = sample("scriptorium_documents_prepared_total", **rejections)
    skipped = sample("scriptorium_pages_routed_total", mode="skipped")
    routed = sample("scriptorium_pages_routed_total", mode="base")
    metrics.count_escalation("tiny", "small")
    metrics.count_page("small", metrics.page_outcome("done", under_read=False, recorded=True), seconds=12.0)
    metrics.count_prepared("rejected", reason="encrypted")
    metrics.count_prepared("prepared", page_modes=[None, "base", "base"])
    assert sample("scriptorium_pages_total", mode="small", outcome="done") == done + 1
    assert sample("scriptorium_page_seconds_sum", mode="small") == seconds + 12.0
    assert sample("scriptorium_escalations_total", from_mode="tiny", to_mode="small") == escalated + 1
    assert sample("scriptorium_documents_prepared_total", **rejections) == rejected + 1
    assert sample("scriptorium_pages_routed_total", mode="skipped") == skipped + 1
    assert sample("scriptorium_pages_routed_total", mode="base") == routed + 2


@pytest.mark.parametrize(
    ("state", "under_read", "recorded", "expected"),
    [
        (PageState.DONE, False, True, "done"),
        (PageState.DONE, True, True, "under_read"),
        (PageState.FAILED, False, True, "failed"),
        (PageState.DONE, False, False, "lease_lost"),
    ],
)
def test_page_outcome_labels(state: str, under_read: bool, recorded: bool, expected: str) -> None:
    assert metrics.page_outcome(state, under_read=under_read, recorded=recorded) == expected


class CudaEngine:
    def memory_stats(self) -> Mapping[str, int]:
        return {"allocated_bytes": 7 * 10**9, "reserved_bytes": 8 * 10**9, "total_bytes": 141 * 10**9}


class CpuEngine:
    revision = "cpu"


def test_engine_start_and_device_memory_are_published() -> None:
    metrics.record_engine_ready(CudaEngine(), load_seconds=41.5, warmup_seconds=3.25)
    assert sample("scriptorium_model_load_seconds") == 41.5
    assert sample("scriptorium_model_warmup_seconds") == 3.25
    assert sample("scriptorium_engines_ready") == 1
    assert sample("scriptorium_gpu_memory_bytes", kind="allocated") == 7 * 10**9
    assert sample("scriptorium_gpu_memory_bytes", kind="total") == 141 * 10**9
    metrics.record_device_memory(CpuEngine())  # no memory_stats: nothing changes, nothing breaks
    assert sample("scriptorium_gpu_memory_bytes", kind="reserved") == 8 * 10**9


def test_backlog_families_in_the_exposition_format() -> None:
    backlog = metrics.Backlog(
        queued_pages_by_mode={"base": 3, "gundam": 2},
        oldest_queued_page_age_s=90.5,
        running_pages=4,
        waiting_documents=1,
        oldest_waiting_document_age_s=12.0,
        preparing_documents=2,
        pages_waiting_for_model={"unlimited-ocr": 7},
    )
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in metrics.backlog_families(backlog)
        for s in family.samples
    }
    assert values[("scriptorium_queue_depth", (("queue", "gpu"),))] == 5
    assert values[("scriptorium_queue_depth", (("queue", "cpu"),))] == 1
    assert values[("scriptorium_queue_oldest_age_seconds", (("queue", "gpu"),))] == 90.5
    assert values[("scriptorium_pages_queued", (("mode", "gundam"),))] == 2
    assert values[("scriptorium_pages_running", ())] == 4
    assert values[("scriptorium_documents_preparing", ())] == 2
    assert values[("scriptorium_pages_waiting_for_model", (("model", "unlimited-ocr"),))] == 7
    assert values[("scriptorium_pages_waiting_for_model", (("model", "deepseek-ocr"),))] == 0


def test_an_unreachable_database_is_reported_not_raised() -> None:
    engine = make_engine(DatabaseSettings(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    try:
        text = generate_latest(
            metrics.backlog_registry(make_session_factory(engine), gone_after_s=15)
        ).decode()
    finally:
        engine.dispose()
    assert "scriptorium_backlog_up 0.0" in text
    assert "scriptorium_queue_depth" not in text


@pytest.fixture(scope="module")
def fresh_database() -> Iterator[str]:
    """A database of its own: the backlog counts every row, so no other test may add any."""
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def fresh_sessions(fresh_database: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(DatabaseSettings(url=fresh_database))
    yield make_session_factory(engine)
    engine.dispose()


@pytest.mark.integration
def test_the_backlog_is_read_from_postgres(fresh_sessions: sessionmaker[Session]) -> None:
    with fresh_sessions.begin() as session:
        assert metrics.read_backlog(session, gone_after_s=15) == metrics.Backlog()
    with fresh_sessions.begin() as session:
        owner = builders.tenant(session).tenant
        builders.document_with_pages(session, owner, pages=3, mode="base")
        busy = builders.document_with_pages(session, owner, pages=2, mode="gundam")
        busy.pages[0].state = PageState.RUNNING
        builders.document_with_pages(session, owner, pages=0, state=DocumentState.RECEIVED)
        builders.document_with_pages(session, owner, pages=0, state=DocumentState.PREPARING)
        finished = builders.document_with_pages(session, owner, pages=1, state=DocumentState.COMPLETED)
        finished.pages[0].state = PageState.DONE
        builders.document_with_pages(session, owner, pages=2, model="unlimited-ocr")
        session.add(GpuWorker(identity="gpu-a:1", model="deepseek-ocr", model_revision="r1"))
        session.add(
            GpuWorker(
                identity="gpu-b:1",
                model="unlimited-ocr",
                model_revision="r2",
                last_seen_at=func.now() - timedelta(seconds=60),  # silent: gone
            )
        )
    with fresh_sessions.begin() as session:
        backlog = metrics.read_backlog(session, gone_after_s=15)
    assert backlog.queued_pages_by_mode == {"base": 5, "gundam": 1}
    assert backlog.pages_waiting_for_model == {"unlimited-ocr": 2}  # deepseek-ocr has a live worker
    assert backlog.running_pages == 1
    assert backlog.waiting_documents == 1
    assert backlog.preparing_documents == 1
    assert 0 <= backlog.oldest_queued_page_age_s < 60
    assert 0 <= backlog.oldest_waiting_document_age_s < 60


@pytest.mark.integration
def test_the_api_serves_metrics(fresh_database: str) -> None:
    settings = Settings(_env_file=None, db={"url": fresh_database})
    with TestClient(create_app(settings)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["scriptorium_backlog_up"].samples[0].value == 1
    assert {s.labels["queue"] for s in families["scriptorium_queue_depth"].samples} == {"gpu", "cpu"}
    assert "scriptorium_queue_oldest_age_seconds" in families
    assert "/metrics" not in create_app(settings).openapi()["paths"]


def test_a_gpu_worker_process_publishes_its_engine_start(tmp_path: Path, settings: Settings) -> None:
    from tests.support.deterministic_engine import build
    from worker.app import ProcessState

    loads = sample("scriptorium_engines_ready")
    ready = tmp_path / "ready"
    state = ProcessState(settings, build, ready)
    runtime = state.start()  # announces its revision and itself (gpu_workers) in Postgres
    try:
        assert ready.exists()
        assert sample("scriptorium_engines_ready") == 1 >= loads
        assert sample("scriptorium_model_load_seconds") >= 0
        assert runtime.ocr_engine is not None
        with runtime.sessions() as session:
            row = session.get(GpuWorker, runtime.identity)
            assert row is not None and row.model == runtime.ocr_engine.model
    finally:
        state.shut_down()  # a clean exit takes the row with it
        with runtime.sessions() as session:
            assert session.get(GpuWorker, runtime.identity) is None
        runtime.close()
