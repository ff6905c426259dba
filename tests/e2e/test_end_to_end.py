"""End to end with the product's own entry points and the real DeepSeek-OCR engine code.

The engine loads a tiny random-weight checkpoint written in the published on-disk layout (no
weights are downloaded), so the text is noise, but every step is the production path: upload,
sandboxed rasterisation, routing, the resident engine in a prefork GPU worker, escalation,
token accounting, the terminal transition and the assembled result.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet
from tests.support.invariants import assert_invariants
from tests.support.services import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("model") / "DeepSeek-OCR-tiny"
    subprocess.run(
        [sys.executable, "-m", "scriptorium.cli", "dev", "tiny-checkpoint", str(target)], check=True
    )
    assert (target / "config.json").exists()
    return target


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str], store: ObjectStore, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    engine_env = {
        "SCRIPTORIUM_ENGINE__MODEL_PATH": str(tiny_checkpoint),
        "SCRIPTORIUM_ENGINE__DEVICE": "cpu",
        "SCRIPTORIUM_ENGINE__MAX_NEW_TOKENS": "12",
        "SCRIPTORIUM_LIMITS__LEASE_S": "30",
    }
    with running_fleet({**env, **engine_env}, tmp_path_factory.mktemp("e2e")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        fleet.start_gpu_worker(real_engine=True)
        fleet.start_beat()
        yield fleet


def test_a_real_pdf_goes_through_the_real_engine(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    document = client.upload(corpus / "pdf-real" / "normal_4pages.pdf", policy='{"max_escalations": 1}')
    finished = client.wait_terminal(document["id"], timeout=600)
    assert finished["state"] == "completed", fleet.logs()
    assert finished["pages"] == {"done": 4}

    pages = [client.page(document["id"], n) for n in range(1, 5)]
    for page in pages:
        assert page["model_revision"].startswith("deepseek-ocr-")
        assert page["model"] == "deepseek-ocr"  # detected from the tiny checkpoint the worker loaded
        assert page["mode"] in ("tiny", "small", "base", "large", "gundam")
        assert page["tokens"]["vision"] > 0 and page["tokens"]["output"] > 0
        first = page["ocr_attempts"][0]
        assert first["mode"] == page["planned_mode"]
        # Random weights rarely say EOS within 12 tokens: such a page is escalated once, then kept flagged.
        assert len(page["ocr_attempts"]) == page["escalations"] + 1 <= 2
        if not page["ocr_attempts"][-1]["finished"]:
            assert page["under_read"] is True and page["error"]["code"] == "under_read"

    for key in ("vision", "valid", "placeholders", "prompt", "output"):
        assert finished["tokens"][key] == sum(page["tokens"][key] for page in pages)
    result = client.result_json(document["id"])
    assert [page["page_no"] for page in result["pages"]] == [1, 2, 3, 4]
    markdown = client.result_markdown(document["id"])
    assert markdown.status_code == 200
    # The assembly task writes document.md/json to the bucket and the document links them.
    stored = wait_for(
        lambda: client.document(document["id"])["links"]["markdown_file"], timeout=60, what="document.md"
    )
    assert httpx.get(stored).text == markdown.text
    assert_invariants(sessions, ids(document))
