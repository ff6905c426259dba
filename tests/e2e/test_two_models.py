"""Issue 13 end to end: DeepSeek-OCR and Unlimited-OCR served side by side by the product's own
entry points, each GPU worker on a tiny random-weight checkpoint of its family (the family is
detected from the checkpoint's config.json before the worker consumes anything).

Documents of both families complete; every page is read only by a worker of its document's
family (the family recorded with the page, and the one the worker that claimed it announced in
``gpu_workers``); the usage ledger splits by family. The upload names its family with the
``model`` form field (``model=unlimited-ocr``), the API serving both families.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Document, GpuWorker, Page, UsageEntry
from scriptorium.storage import ObjectStore
from tests.support.client import ApiClient, ids
from tests.support.fleet import Fleet, running_fleet
from tests.support.invariants import assert_invariants

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAMILIES = ("deepseek-ocr", "unlimited-ocr")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {}
    for family in FAMILIES:
        target = tmp_path_factory.mktemp("model") / f"{family}-tiny"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "scriptorium.cli",
                "dev",
                "tiny-checkpoint",
                str(target),
                "--family",
                family,
            ],
            check=True,
        )
        built[family] = target
    return built


@pytest.fixture(scope="module")
def fleet(
    env: dict[str, str],
    store: ObjectStore,
    checkpoints: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    shared = {
        "SCRIPTORIUM_MODELS__SERVED": json.dumps(list(FAMILIES)),
        "SCRIPTORIUM_ENGINE__DEVICE": "cpu",
        "SCRIPTORIUM_ENGINE__MAX_NEW_TOKENS": "12",
        "SCRIPTORIUM_LIMITS__LEASE_S": "30",
    }
    with running_fleet({**env, **shared}, tmp_path_factory.mktemp("e2e-two-models")) as fleet:
        fleet.start_api()
        fleet.start_cpu_worker()
        for family in FAMILIES:
            fleet.start_gpu_worker(
                f"gpu-{family}",
                real_engine=True,
                engine_env={"SCRIPTORIUM_ENGINE__MODEL_PATH": str(checkpoints[family])},
            )
        fleet.start_beat()
        yield fleet


def test_two_families_side_by_side_each_page_read_by_its_own_family(
    fleet: Fleet, sessions: sessionmaker[Session], corpus: Path
) -> None:
    client = ApiClient.for_new_tenant(fleet, sessions)
    pdf = corpus / "pdf-real" / "normal_4pages.pdf"
    policy = '{"max_escalations": 1}'
    deepseek = client.upload(pdf, pages="1-2", policy=policy)
    unlimited = client.upload(pdf, pages="3-4", policy=policy, model="unlimited-ocr")
    expected = {deepseek["id"]: "deepseek-ocr", unlimited["id"]: "unlimited-ocr"}

    for document in (deepseek, unlimited):
        finished = client.wait_terminal(document["id"], timeout=600)
        assert finished["state"] == "completed", fleet.logs()
        assert finished["pages"] == {"done": 2}

    with sessions() as session:
        documents = dict(
            session.execute(
                select(Document.id, Document.model).where(Document.id.in_(ids(deepseek, unlimited)))
            ).all()
        )
        assert {str(document_id): model for document_id, model in documents.items()} == expected
        readers = session.execute(
            select(Page.document_id, Page.model, Page.model_revision, GpuWorker.model)
            .join(GpuWorker, GpuWorker.identity == Page.lease_owner)
            .where(Page.document_id.in_(ids(deepseek, unlimited)))
        ).all()
        ledger = dict(
            session.execute(
                select(
                    UsageEntry.model,
                    func.count(func.distinct(func.row(UsageEntry.document_id, UsageEntry.page_no))),
                )
                .where(UsageEntry.document_id.in_(ids(deepseek, unlimited)))
                .group_by(UsageEntry.model)
            ).all()
        )
        ledger_documents = dict(
            session.execute(
                select(UsageEntry.document_id, func.array_agg(func.distinct(UsageEntry.model)))
                .where(UsageEntry.document_id.in_(ids(deepseek, unlimited)))
                .group_by(UsageEntry.document_id)
            ).all()
        )
    assert len(readers) == 4, "every page was claimed by a worker that is still announced"
    for document_id, page_model, revision, worker_model in readers:
        family = expected[str(document_id)]
        assert page_model == worker_model == family
        assert revision.startswith(f"{family}-")
    assert ledger == {"deepseek-ocr": 2, "unlimited-ocr": 2}
    assert {str(document_id): models for document_id, models in ledger_documents.items()} == {
        deepseek["id"]: ["deepseek-ocr"],
        unlimited["id"]: ["unlimited-ocr"],
    }
    for document in (deepseek, unlimited):
        for page_no in (1, 2) if document is deepseek else (3, 4):
            page = client.page(document["id"], page_no)
            assert page["model"] == expected[document["id"]]
    assert_invariants(sessions, ids(deepseek, unlimited))


def test_each_worker_announced_the_family_of_its_checkpoint(
    fleet: Fleet, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        rows = session.execute(select(GpuWorker.identity, GpuWorker.model)).all()
    served = {}
    for process in fleet.processes:
        if process.name.startswith("gpu-"):
            children = {str(pid) for pid in process.children()}
            served[process.name] = {
                model for identity, model in rows if identity.rsplit(":", 1)[-1] in children
            }
    assert served == {f"gpu-{family}": {family} for family in FAMILIES}
