"""Per-document model choice through the HTTP API in-process (real Postgres, Redis and S3, no
worker): resolution order, refusals, dedup never crossing models, responses, webhook payloads and
usage split by model, and the operators' `tenant model` command."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from scriptorium.cli import cli
from scriptorium.db.models import Document, Event, Tenant
from scriptorium.model_families import ModelFamily
from scriptorium.settings import ModelsSettings, Settings
from scriptorium.storage import ObjectStore
from scriptorium.webhooks.payloads import render_body
from tests.integration.scheduling.conftest import read_page
from tests.support import builders

pytestmark = pytest.mark.integration

DEEPSEEK, UNLIMITED = ModelFamily.DEEPSEEK_OCR.value, ModelFamily.UNLIMITED_OCR.value
BOTH = ModelsSettings(
    served=[ModelFamily.DEEPSEEK_OCR, ModelFamily.UNLIMITED_OCR], default=ModelFamily.UNLIMITED_OCR
)


@pytest.fixture(scope="module")
def both(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    """A fleet serving both families; what names no model is read with unlimited-ocr."""
    with TestClient(create_app(settings.model_copy(update={"models": BOTH}))) as client:
        yield client


@pytest.fixture(scope="module")
def deepseek_only(settings: Settings, store: ObjectStore) -> Iterator[TestClient]:
    """The default settings: deepseek-ocr alone is served."""
    with TestClient(create_app(settings)) as client:
        yield client


def _tenant(
    sessions: sessionmaker[Session], default_model: str | None = None
) -> tuple[Tenant, dict[str, str]]:
    with sessions.begin() as session:
        issued = builders.tenant(session)
        issued.tenant.default_model = default_model
        session.flush()
        session.expunge(issued.tenant)
    return issued.tenant, {"Authorization": f"Bearer {issued.key}"}


def _post(
    client: TestClient, auth: dict[str, str], data: bytes | None = None, **form: str
) -> dict[str, object]:
    payload = data if data is not None else uuid.uuid4().bytes
    response = client.post(
        "/v1/documents", headers=auth, files={"file": ("a.png", io.BytesIO(payload))}, data=form
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


def _stored(sessions: sessionmaker[Session], body: dict[str, object]) -> Document:
    with sessions() as session:
        document = session.get(Document, uuid.UUID(str(body["id"])))
        assert document is not None
        return document


def test_the_document_s_choice_wins_then_the_tenant_s_then_the_fleet_s(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, plain = _tenant(sessions)
    _, prefers_deepseek = _tenant(sessions, default_model=DEEPSEEK)

    fleet_default = _post(both, plain)
    tenant_default = _post(both, prefers_deepseek)
    explicit = _post(both, prefers_deepseek, model=UNLIMITED)

    assert (fleet_default["model"], tenant_default["model"], explicit["model"]) == (
        UNLIMITED,
        DEEPSEEK,
        UNLIMITED,
    )
    assert (
        _stored(sessions, explicit).model == UNLIMITED and _stored(sessions, tenant_default).model == DEEPSEEK
    )
    shown = both.get(f"/v1/documents/{explicit['id']}", headers=prefers_deepseek).json()
    assert shown["model"] == UNLIMITED
    listed = both.get("/v1/documents", headers=prefers_deepseek).json()["items"]
    assert sorted(item["model"] for item in listed) == [DEEPSEEK, UNLIMITED]


def test_an_unknown_model_is_refused_with_the_known_ones(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, auth = _tenant(sessions)
    refused = both.post(
        "/v1/documents",
        headers=auth,
        files={"file": ("a.png", io.BytesIO(b"x"))},
        data={"model": "DeepSeek-OCR"},
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "unknown_model" and "deepseek-ocr, unlimited-ocr" in error["message"]


def test_a_model_the_fleet_does_not_serve_is_refused_named_or_inherited(
    deepseek_only: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, auth = _tenant(sessions)
    _, stale_default = _tenant(sessions, default_model=UNLIMITED)  # set while the fleet served it
    named = deepseek_only.post(
        "/v1/documents", headers=auth, files={"file": ("a.png", io.BytesIO(b"x"))}, data={"model": UNLIMITED}
    )
    inherited = deepseek_only.post(
        "/v1/documents", headers=stale_default, files={"file": ("a.png", io.BytesIO(b"x"))}
    )
    for refused in (named, inherited):
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "model_not_served"
        assert "serves deepseek-ocr" in refused.json()["error"]["message"]
    assert _post(deepseek_only, auth, model=DEEPSEEK)["model"] == DEEPSEEK


def test_dedup_reuses_within_a_model_and_never_across_models(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, auth = _tenant(sessions)
    data = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes
    first = _post(both, auth, data, model=DEEPSEEK)
    other_model = _post(both, auth, data, model=UNLIMITED)
    same_model = _post(both, auth, data, model=DEEPSEEK)
    same_as_other = _post(both, auth, data)  # the fleet default: unlimited-ocr

    assert _stored(sessions, other_model).duplicate_of is None
    assert _stored(sessions, first).dedup_fingerprint != _stored(sessions, other_model).dedup_fingerprint
    assert same_model["duplicate_of"] == first["id"]
    assert same_as_other["duplicate_of"] == other_model["id"]


def test_pages_show_the_document_s_model_and_the_one_that_read_them(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    owner, auth = _tenant(sessions)
    with sessions.begin() as session:
        document_id = builders.document_with_pages(session, owner, pages=1, model=UNLIMITED).id
    assert read_page(sessions, document_id, 1, model=UNLIMITED)

    page = both.get(f"/v1/documents/{document_id}/pages/1", headers=auth).json()
    assert page["model"] == UNLIMITED and page["document_model"] == UNLIMITED
    result = both.get(f"/v1/documents/{document_id}/result", headers=auth).json()
    assert result["document"]["model"] == UNLIMITED and [p["model"] for p in result["pages"]] == [UNLIMITED]


def test_document_events_and_their_webhook_bodies_carry_the_model(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    _, auth = _tenant(sessions)
    uploaded = _post(both, auth, model=DEEPSEEK)
    assert both.delete(f"/v1/documents/{uploaded['id']}", headers=auth).status_code == 202

    with sessions() as session:
        event = session.execute(
            select(Event).where(Event.document_id == uuid.UUID(str(uploaded["id"])))
        ).scalar_one()
    assert event.type == "document.cancelled" and event.payload["model"] == DEEPSEEK
    body = json.loads(
        render_body(
            event_type=event.type,
            occurred_at=datetime.now(UTC),
            payload=event.payload,
            public_url="https://ocr.example",
        )
    )
    assert body["data"]["model"] == DEEPSEEK


def test_usage_is_split_by_model_and_the_totals_are_kept(
    both: TestClient, sessions: sessionmaker[Session]
) -> None:
    owner, auth = _tenant(sessions)
    with sessions.begin() as session:
        read_by_deepseek = builders.document_with_pages(session, owner, pages=2, model=DEEPSEEK).id
        read_by_unlimited = builders.document_with_pages(session, owner, pages=1, model=UNLIMITED).id
    assert read_page(sessions, read_by_deepseek, 1) and read_page(sessions, read_by_deepseek, 2)
    assert read_page(
        sessions, read_by_unlimited, 1, builders.attempt(), builders.attempt(escalation=True), model=UNLIMITED
    )

    report = both.get("/v1/usage", headers=auth, params={"group_by": "model"}).json()
    lines = {line["key"]: line for line in report["lines"]}
    assert (lines[DEEPSEEK]["pages"], lines[DEEPSEEK]["engine_runs"]) == (2, 2)
    assert (lines[UNLIMITED]["pages"], lines[UNLIMITED]["engine_runs"], lines[UNLIMITED]["escalations"]) == (
        1,
        2,
        1,
    )
    total = report["total"]
    assert (total["pages"], total["engine_runs"]) == (3, 4)
    assert total["vision_tokens"] == lines[DEEPSEEK]["vision_tokens"] + lines[UNLIMITED]["vision_tokens"]

    by_day = both.get("/v1/usage", headers=auth).json()  # any grouping carries the split by model
    assert by_day["models"] == report["lines"] and by_day["total"] == total

    only_unlimited = both.get(
        "/v1/usage", headers=auth, params={"group_by": "document", "model": UNLIMITED}
    ).json()
    assert only_unlimited["model"] == UNLIMITED
    assert [line["key"] for line in only_unlimited["lines"]] == [str(read_by_unlimited)]
    assert only_unlimited["total"]["pages"] == 1

    exported = both.get("/v1/usage", headers=auth, params={"group_by": "model", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(row["model"], row["pages"]) for row in rows] == [(DEEPSEEK, "2"), (UNLIMITED, "1")]

    unknown = both.get("/v1/usage", headers=auth, params={"model": "ocr"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_model"


def _scriptorium(env: dict[str, str], *arguments: str, served: str | None = None) -> Result:
    values = {**env, **({"SCRIPTORIUM_MODELS__SERVED": served} if served else {})}
    return CliRunner().invoke(cli, list(arguments), env=values, prog_name="scriptorium")


def _default_model(sessions: sessionmaker[Session], name: str) -> str | None:
    with sessions() as session:
        return session.execute(select(Tenant.default_model).where(Tenant.name == name)).scalar_one()


def test_operators_set_a_tenant_s_default_model_among_the_served_ones(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    name = f"models-{uuid.uuid4().hex[:8]}"
    both_served = json.dumps([DEEPSEEK, UNLIMITED])
    created = _scriptorium(env, "tenant", "create", name, "--model", UNLIMITED, served=both_served)
    assert created.exit_code == 0, created.output
    assert _default_model(sessions, name) == UNLIMITED

    shown = _scriptorium(env, "tenant", "model", name, served=both_served)
    assert json.loads(shown.stdout) == {
        "tenant": name,
        "default_model": UNLIMITED,
        "effective_model": UNLIMITED,
        "served": [DEEPSEEK, UNLIMITED],
    }

    refused = _scriptorium(env, "tenant", "model", name, UNLIMITED)  # deepseek-ocr alone is served
    assert refused.exit_code == 1 and "model_not_served" in refused.stderr
    unknown = _scriptorium(env, "tenant", "model", name, "ocr", served=both_served)
    assert unknown.exit_code == 1 and "unknown_model" in unknown.stderr
    assert _default_model(sessions, name) == UNLIMITED  # refusals change nothing

    reset = _scriptorium(env, "tenant", "model", name, "none")
    assert reset.exit_code == 0, reset.output
    assert json.loads(reset.stdout)["default_model"] is None
    assert json.loads(reset.stdout)["effective_model"] == DEEPSEEK
    assert _default_model(sessions, name) is None


def test_operators_read_a_tenant_s_usage_split_by_model(
    env: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    owner, _ = _tenant(sessions)
    with sessions.begin() as session:
        read_by_deepseek = builders.document_with_pages(session, owner, pages=1, model=DEEPSEEK).id
        read_by_unlimited = builders.document_with_pages(session, owner, pages=2, model=UNLIMITED).id
    assert read_page(sessions, read_by_deepseek, 1)
    assert read_page(sessions, read_by_unlimited, 1, model=UNLIMITED)
    assert read_page(sessions, read_by_unlimited, 2, model=UNLIMITED)

    shown = _scriptorium(env, "tenant", "usage", owner.name)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["group_by"] == "model" and report["model"] is None
    assert [(line["key"], line["pages"]) for line in report["lines"]] == [(DEEPSEEK, 1), (UNLIMITED, 2)]
    assert report["models"] == report["lines"] and report["total"]["pages"] == 3

    narrowed = json.loads(
        _scriptorium(
            env, "tenant", "usage", owner.name, "--group-by", "document", "--model", UNLIMITED
        ).stdout
    )
    assert [line["key"] for line in narrowed["lines"]] == [str(read_by_unlimited)]
    assert narrowed["total"]["pages"] == 2

    exported = _scriptorium(env, "tenant", "usage", owner.name, "--csv")
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(row["model"], row["pages"]) for row in rows] == [(DEEPSEEK, "1"), (UNLIMITED, "2")]

    unknown = _scriptorium(env, "tenant", "usage", owner.name, "--model", "ocr")
    assert unknown.exit_code == 1 and "unknown_model" in unknown.stderr
