"""Faults against the real fleet: killed workers, poison pages, a restarted Redis, cancellation."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants
from tests.support.services import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fleet(env: dict[str, str], store: ObjectStore, tmp_path: Path) -> Iterator[Fleet]:
    events = tmp_path / "events.jsonl"
    with running_fleet({**env, "FAKE_ENGINE_EVENTS": str(events)}, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_beat()
        yield fleet


def _events(fleet: Fleet) -> list[dict[str, object]]:
    path = Path(fleet.env["FAKE_ENGINE_EVENTS"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_worker_killed_mid_page_leaves_the_page_done_exactly_once(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    worker = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "2"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "crazyones.pdf")
    wait_until(
        lambda: client.document(document["id"])["pages"].get("running", 0) == 1,
        timeout=60,
        what="the page to start",
        fleet=fleet,
    )
    worker.kill_group(signal.SIGKILL)  # the whole worker: main process and the pool child
    fleet.start_gpu_worker("worker-gpu-2")
    finished = client.wait_terminal(document["id"], timeout=120)
    assert finished["state"] == "completed"
    page = client.page(document["id"], 1)
    assert page["attempts"] == 2 and len(page["ocr_attempts"]) == 1
    assert_invariants(sessions, ids(document))


def test_a_pool_child_killed_mid_page_is_retried_at_once(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path, tmp_path: Path
) -> None:
    once = tmp_path / "crashed-once"
    fleet.start_gpu_worker(
        engine_env={"FAKE_ENGINE_CRASH_PAGES": "2", "FAKE_ENGINE_CRASH_ONCE_FILE": str(once)}
    )
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    finished = client.wait_terminal(document["id"], timeout=120)
    assert once.exists()
    assert finished["state"] == "completed"
    assert_invariants(sessions, ids(document))


def test_a_poison_page_is_dead_lettered_and_the_document_is_partial(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_CRASH_PAGES": "3"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    finished = client.wait_terminal(document["id"], timeout=180)
    assert finished["state"] == "partial"
    dead = client.page(document["id"], 3)
    assert dead["state"] == "dead" and dead["error"]["code"] == "attempts_exhausted"
    result = client.result_json(document["id"])
    assert result["failed_pages"] == [3]
    markdown = client.result_markdown(document["id"])
    assert markdown.headers["X-Failed-Pages"] == "3"
    assert_invariants(sessions, ids(document))


def test_an_engine_page_error_fails_only_that_page(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_FAIL_PAGES": "2"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "partial"
    assert client.page(document["id"], 2)["error"]["code"] == "engine_error"
    assert client.page(document["id"], 1)["state"] == "done"
    assert_invariants(sessions, ids(document))


def test_cancelled_pages_never_reach_the_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "1"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(
        corpus / "bad-input" / "huge" / "pdf2image-memory-error-test-400p.pdf", pages="1-24", mode="tiny"
    )
    wait_until(
        lambda: client.document(document["id"])["pages"].get("done", 0) >= 1,
        timeout=120,
        what="the first page to be read",
        fleet=fleet,
    )
    assert client.http.delete(f"/v1/documents/{document['id']}").status_code == 202
    cancelled_at = time.time()
    time.sleep(6)
    finished = client.document(document["id"])
    assert finished["state"] == "cancelled"
    assert finished["pages"].get("cancelled", 0) >= 8
    # A batch already on the engine may finish; nothing starts after it.
    late = [e for e in _events(fleet) if float(e["at"]) > cancelled_at + 1 + 8 * 1.0]  # type: ignore[arg-type]
    assert late == []
    assert_invariants(sessions, ids(document))


def test_escalation_is_recorded_and_visible(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_UNDER_READ_BELOW": "base"})
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(
        corpus / "pdf-real" / "crazyones.pdf", policy='{"target_ratio": 50, "max_escalations": 4}'
    )
    finished = client.wait_terminal(document["id"])
    assert finished["state"] == "completed"
    page = client.page(document["id"], 1)
    modes = [attempt["mode"] for attempt in page["ocr_attempts"]]
    assert modes[0] in ("tiny", "small") and modes[-1] == "base", json.dumps(page)[:3000]
    assert page["escalations"] == len(modes) - 1 >= 1
    assert page["mode"] == "base" and page["under_read"] is False
    assert finished["escalations"] == page["escalations"]
    assert_invariants(sessions, ids(document))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    wait_for(lambda: redis.Redis(port=port).ping(), timeout=10, what="redis")
    yield f"redis://127.0.0.1:{port}/0", process
    process.terminate()


def test_redis_restarted_mid_run_loses_nothing(
    env: dict[str, str],
    store: ObjectStore,
    sessions: sessionmaker[Session],
    corpus: Path,
    tmp_path: Path,
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, server = own_redis
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with running_fleet({**env, "SCRIPTORIUM_REDIS__URL": url}, tmp_path) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_beat()
        fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "0.5"})
        client = ApiClient.for_new_tenant(fleet, sessions)
        documents = [
            client.upload(corpus / "pdf-real" / "normal_4pages.pdf", dedup="false") for _ in range(3)
        ]
        wait_until(
            lambda: client.document(documents[0]["id"])["pages"].get("done", 0) >= 1,
            timeout=60,
            what="work to start",
            fleet=fleet,
        )
        server.send_signal(signal.SIGKILL)  # no persistence: every queued message is gone
        server.wait()
        time.sleep(1)
        restarted = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            for document in documents:
                assert client.wait_terminal(document["id"], timeout=180)["state"] == "completed"
            assert_invariants(sessions, ids(*documents))
        finally:
            restarted.terminate()


def test_a_document_whose_prepare_message_was_lost_is_still_prepared(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path, env: dict[str, str]
) -> None:
    fleet.start_gpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    cpu = fleet.processes[1]
    cpu.stop()
    document = client.upload(corpus / "pdf-real" / "crazyones.pdf")
    queue = redis.Redis.from_url(env["SCRIPTORIUM_REDIS__URL"])
    wait_for(lambda: queue.llen("scriptorium.cpu") > 0, timeout=10, what="the prepare message")
    queue.delete("scriptorium.cpu")  # the message is lost; the row still says "received"
    fleet.start_cpu_worker("worker-cpu-2")
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    with sessions() as session:
        pages = (
            session.execute(select(Page).where(Page.document_id == uuid.UUID(document["id"]))).scalars().all()
        )
        assert [page.state for page in pages] == ["done"]
