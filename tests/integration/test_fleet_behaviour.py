"""The real fleet on ordinary paths: a page the engine cannot read, cancellation, escalation.

Faults (killed workers, outages, lost messages) are in tests/faults.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet, wait_until
from tests.support.invariants import assert_invariants

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
