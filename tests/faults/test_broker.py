"""The broker misbehaves: restarted again and again, losing messages, delivering twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Page
from scriptorium.messages import OCR_TASK
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.queueing import create_celery, gpu_queue
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from tests.faults.servers import RedisServer
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants
from tests.support.rows import pages_of
from tests.support.services import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

RESTARTS = 5


@pytest.mark.parametrize("redis_server", [False, True], ids=["no-persistence", "append-only"], indirect=True)
def test_redis_restarted_repeatedly_while_documents_flow_loses_nothing(
    fault_env: dict[str, str],
    store: ObjectStore,
    sessions: sessionmaker[Session],
    corpus: Path,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    with running_fleet({**fault_env, "SCRIPTORIUM_REDIS__URL": redis_server.url}, tmp_path) as fleet:
        fleet.start_api()
        cpu = fleet.start_cpu_worker()
        fleet.start_beat()
        gpu = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "0.3"})
        fleet.supervise()
        client = ApiClient.for_new_tenant(fleet, sessions)
        documents = []
        for restart in range(RESTARTS):
            documents.append(client.upload(corpus / "pdf-real" / "normal_4pages.pdf", dedup="false"))
            time.sleep(1.5)  # let some of it reach the workers, then pull the broker away
            redis_server.kill()
            documents.append(
                client.upload(corpus / "pdf-real" / "crazyones.pdf", dedup="false")
            )  # broker down
            time.sleep(1 + restart % 3)
            redis_server.start()
        for document in documents:
            assert client.wait_terminal(document["id"], timeout=240)["state"] == "completed"
        assert_invariants(sessions, ids(*documents))
        # Both workers are still consuming: a fresh document goes through without help.
        last = client.upload(corpus / "pdf-real" / "crazyones.pdf", dedup="false")
        assert client.wait_terminal(last["id"], timeout=60)["state"] == "completed"
        with sessions() as session:
            attempts = session.execute(
                select(Page.attempts).where(Page.document_id.in_(ids(*documents, last)))
            ).scalars()
            assert max(attempts) == 1, "a broker restart costs a page no attempt"
        print(f"worker exits replaced by the supervisor: cpu={cpu.exits} gpu={gpu.exits}")


def test_a_hung_broker_makes_workers_exit_for_their_supervisor_and_work_resumes(
    fault_env: dict[str, str],
    store: ObjectStore,
    sessions: sessionmaker[Session],
    corpus: Path,
    tmp_path: Path,
    redis_server: RedisServer,
) -> None:
    with running_fleet({**fault_env, "SCRIPTORIUM_REDIS__URL": redis_server.url}, tmp_path) as fleet:
        fleet.start_api()
        cpu = fleet.start_cpu_worker()
        fleet.start_beat()
        gpu = fleet.start_gpu_worker(engine_env={"FAKE_ENGINE_DELAY_S": "0.5"})
        fleet.supervise()
        client = ApiClient.for_new_tenant(fleet, sessions)
        document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base", dedup="false")
        wait_until(
            lambda: client.document(document["id"])["state"] == "processing",
            timeout=60,
            what="preparation to finish",
            fleet=fleet,
        )
        redis_server.pause()
        try:
            wait_until(
                lambda: 75 in cpu.exits and 75 in gpu.exits,
                timeout=60,
                what="both workers to give up on the hung broker (exit 75)",
                fleet=fleet,
            )
        finally:
            redis_server.resume()
        assert '"worker.watchdog_exit"' in gpu.log() and "has not answered" in gpu.log()
        assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
        assert_invariants(sessions, ids(document))


def test_a_prepare_message_the_broker_lost_is_sent_again(
    fleet: Fleet, fault_env: dict[str, str], sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_gpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "crazyones.pdf")
    queue = redis.Redis.from_url(fault_env["SCRIPTORIUM_REDIS__URL"])
    wait_for(lambda: queue.llen("scriptorium.cpu") > 0, timeout=10, what="the prepare message")
    queue.delete("scriptorium.cpu")  # the message is lost; the row still says "received"
    fleet.start_cpu_worker()
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    assert_invariants(sessions, ids(document))


def test_page_messages_the_broker_lost_are_sent_again(
    fleet: Fleet, fault_env: dict[str, str], sessions: sessionmaker[Session], corpus: Path
) -> None:
    fleet.start_cpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    queue = redis.Redis.from_url(fault_env["SCRIPTORIUM_REDIS__URL"])
    gpu = gpu_queue(DEFAULT_MODEL_FAMILY)
    wait_for(lambda: queue.llen(gpu) >= 1, timeout=60, what="the batch message")
    queue.delete(gpu)  # the batch message is gone; the rows say "queued"
    fleet.start_gpu_worker()
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    assert_invariants(sessions, ids(document))


def test_a_page_message_delivered_many_times_is_read_once(
    fleet: Fleet,
    fault_env: dict[str, str],
    settings: Settings,
    sessions: sessionmaker[Session],
    corpus: Path,
) -> None:
    fleet.start_cpu_worker()
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", mode="base")
    wait_until(
        lambda: client.document(document["id"])["state"] == "processing",
        timeout=60,
        what="the pages to be queued",
        fleet=fleet,
    )
    app = create_celery(settings)
    queue = gpu_queue(DEFAULT_MODEL_FAMILY)
    for _ in range(4):  # every page announced again and again, alone and as a batch, before any worker runs
        for page_no in range(1, 5):
            app.send_task(OCR_TASK, kwargs={"pages": [[document["id"], page_no]]}, queue=queue)
        app.send_task(OCR_TASK, kwargs={"pages": [[document["id"], n] for n in range(1, 5)]}, queue=queue)
    fleet.start_gpu_worker()
    assert client.wait_terminal(document["id"], timeout=120)["state"] == "completed"
    events = Path(fault_env["FAKE_ENGINE_EVENTS"]).read_text().splitlines()
    assert len(events) == 4, "each page reached the engine exactly once"
    assert {page.attempts for page in pages_of(sessions, document["id"])} == {1}
    assert_invariants(sessions, ids(document))
