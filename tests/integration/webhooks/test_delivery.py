"""The sender against real Postgres and a real HTTP receiver on loopback, run in this process."""

from __future__ import annotations

import ipaddress
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from scriptorium.lifecycle.claims import PageClaim
from scriptorium.settings import Settings
from scriptorium.webhooks.addresses import IPAddress
from scriptorium.webhooks.deliveries import SentAttempt, claim_due, record_attempt
from scriptorium.webhooks.endpoints import create_endpoint, normalise_event_types, rotate_endpoint_secret
from scriptorium.webhooks.schedule import AttemptResult, RetryPolicy
from tests.integration.webhooks.conftest import (
    claim,
    deliveries_of,
    events_of,
    finished_document,
    record,
    with_webhooks,
)
from tests.integration.webhooks.receiver import Answer, Receiver, running_receiver
from tests.support import builders
from worker.webhook_sender import WebhookSender, system_resolver

pytestmark = pytest.mark.integration


def _endpoint(
    sessions: sessionmaker[Session], owner: Tenant, url: str, event_types: list[str] | None = None
) -> tuple[uuid.UUID, str]:
    with sessions.begin() as session:
        endpoint, secret = create_endpoint(
            session, owner.id, url=url, event_types=normalise_event_types(event_types)
        )
        return endpoint.id, secret


def _attempts(sessions: sessionmaker[Session], delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    with sessions() as session:
        return list(
            session.execute(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.id)
            ).scalars()
        )


def _send(sessions: sessionmaker[Session], settings: Settings, **kwargs: object) -> None:
    WebhookSender(sessions, settings, **kwargs).run(budget_s=30)  # type: ignore[arg-type]


def test_a_finished_document_is_delivered_once_signed_with_the_endpoint_secret(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _, secret = _endpoint(sessions, owner, receiver.url())
    document_id = finished_document(sessions, owner, pages=2)
    _send(sessions, webhook_settings)
    _send(sessions, webhook_settings)

    [request] = receiver.requests()
    assert request.signed_by(secret)
    assert not request.signed_by(_endpoint(sessions, owner, receiver.url())[1])
    assert request.headers["content-type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 30
    body = request.json
    assert body["type"] == "document.completed"
    data = body["data"]
    assert data["document_id"] == str(document_id) and data["state"] == "completed"
    assert data["pages"] == {"done": 2} and data["tokens"]["output"] == 80
    assert data["links"]["self"].endswith(f"/v1/documents/{document_id}")
    assert b"SECRET PAGE TEXT" not in request.body
    [event] = events_of(sessions, document_id)
    assert request.webhook_id == f"msg_{event.id.hex}"

    [delivery] = deliveries_of(sessions, document_id)
    assert (
        delivery.state == "delivered" and delivery.delivered_at is not None and delivery.lease_token is None
    )
    [attempt] = _attempts(sessions, delivery.id)
    assert (attempt.status_code, attempt.error, attempt.address) == (200, None, "127.0.0.1")
    assert attempt.response_excerpt == "ok" and attempt.latency_ms >= 0


def test_the_event_type_follows_the_outcome_and_subscriptions_filter(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _endpoint(sessions, owner, receiver.url("/partial-only"), ["document.partial"])
    _endpoint(sessions, owner, receiver.url("/failed-only"), ["document.failed"])
    with sessions.begin() as session:
        disabled, _ = create_endpoint(
            session,
            owner.id,
            url=receiver.url("/disabled"),
            event_types=normalise_event_types(None),
            enabled=False,
        )
    document_id = finished_document(sessions, owner, pages=2, failed=(2,))
    _send(sessions, webhook_settings)

    [request] = receiver.requests()
    assert request.path == "/partial-only"
    assert request.json["type"] == "document.partial" and request.json["data"]["pages"] == {
        "done": 1,
        "failed": 1,
    }
    assert [d.endpoint_id for d in deliveries_of(sessions, document_id)] != [disabled.id]


def test_a_failing_receiver_is_retried_with_the_same_webhook_id(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    secret = _endpoint(sessions, owner, receiver.url())[1]
    receiver.answer(Answer(500, body=b"boom"), Answer(200))
    document_id = finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings)
    [delivery] = deliveries_of(sessions, document_id)
    assert (
        delivery.state == "retrying"
        and delivery.last_status_code == 500
        and delivery.last_error == "HTTP 500"
    )
    assert (delivery.next_attempt_at - delivery.updated_at) == pytest.approx(
        timedelta(seconds=1), abs=timedelta(seconds=0.2)
    )

    time.sleep(1.1)
    _send(sessions, webhook_settings)
    first, second = receiver.requests()
    assert first.webhook_id == second.webhook_id and first.body == second.body
    assert first.signed_by(secret) and second.signed_by(secret)
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "delivered" and delivery.attempts == 2 and delivery.failures == 0
    assert [(a.attempt_no, a.status_code, a.response_excerpt) for a in _attempts(sessions, delivery.id)] == [
        (1, 500, "boom"),
        (2, 200, "ok"),
    ]


def test_the_schedule_ends_in_dead(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _endpoint(sessions, owner, receiver.url())
    receiver.answer(Answer(502))
    document_id = finished_document(sessions, owner, pages=1)
    _send(sessions, with_webhooks(settings, retry_schedule_s=[0, 0]))
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "dead" and delivery.attempts == 3 and len(receiver.requests()) == 3
    _send(sessions, with_webhooks(settings, retry_schedule_s=[0, 0]))
    assert len(receiver.requests()) == 3


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    sessions: sessionmaker[Session],
    webhook_settings: Settings,
    receiver: Receiver,
    owner: Tenant,
    status: int,
) -> None:
    _endpoint(sessions, owner, receiver.url())
    receiver.answer(Answer(status, headers={"Retry-After": "120"}))
    document_id = finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings)
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "retrying" and delivery.last_status_code == status
    assert (delivery.next_attempt_at - delivery.updated_at) == pytest.approx(
        timedelta(seconds=120), abs=timedelta(seconds=1)
    )


def test_410_disables_the_endpoint(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    endpoint_id, _ = _endpoint(sessions, owner, receiver.url())
    receiver.answer(Answer(410))
    first = finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings)
    [delivery] = deliveries_of(sessions, first)
    assert (
        delivery.state == "dead" and delivery.last_status_code == 410 and "410" in (delivery.last_error or "")
    )
    with sessions() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert (
            endpoint is not None and endpoint.enabled is False and "410" in (endpoint.disabled_reason or "")
        )
    second = finished_document(sessions, owner, pages=1)
    assert deliveries_of(sessions, second) == []
    _send(sessions, webhook_settings)
    assert len(receiver.requests()) == 1


def test_blocked_addresses_are_refused_without_a_connection(
    sessions: sessionmaker[Session], settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    strict = with_webhooks(settings, allowed_networks=[])
    answers: dict[str, list[IPAddress]] = {
        "rebound.example.test": [ipaddress.ip_address("127.0.0.1")],
        "mixed.example.test": [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("127.0.0.1")],
        "metadata.example.test": [ipaddress.ip_address("169.254.169.254")],
    }

    async def resolver(host: str, port: int) -> list[IPAddress]:
        return answers[host] if host in answers else await system_resolver(host, port)

    urls = [receiver.url(), receiver.url(host="localhost"), *(receiver.url(host=host) for host in answers)]
    for url in urls:
        _endpoint(sessions, owner, url)
    document_id = finished_document(sessions, owner, pages=1)
    _send(sessions, strict, resolver=resolver)

    assert receiver.connections == 0 and receiver.requests() == []
    deliveries = deliveries_of(sessions, document_id)
    assert len(deliveries) == len(urls)
    for delivery in deliveries:
        [attempt] = _attempts(sessions, delivery.id)
        assert attempt.address is None and attempt.status_code is None
        assert (attempt.error or "").startswith("refused without connecting")
        assert delivery.state == "retrying"
    errors = " ".join(a.error or "" for d in deliveries for a in _attempts(sessions, d.id))
    assert "127.0.0.1 is loopback" in errors and "169.254.169.254 is a cloud metadata service" in errors


def test_the_checked_address_is_connected_to_with_the_original_host(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    answers = iter([[ipaddress.ip_address("127.0.0.1")], [ipaddress.ip_address("10.9.9.9")]])
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[IPAddress]:
        asked.append(host)
        return next(answers)

    _endpoint(sessions, owner, receiver.url(host="hooks.example.test"))
    document_id = finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings, resolver=rebinding)
    [request] = receiver.requests()
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert asked == ["hooks.example.test"]
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "delivered"


def test_redirects_are_not_followed(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    with running_receiver() as elsewhere:
        receiver.answer(Answer(307, headers={"Location": elsewhere.url()}))
        _endpoint(sessions, owner, receiver.url())
        document_id = finished_document(sessions, owner, pages=1)
        _send(sessions, webhook_settings)
        assert elsewhere.connections == 0
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "retrying" and delivery.last_status_code == 307
    assert "redirects are not followed" in (delivery.last_error or "")


def test_a_receiver_that_never_answers_costs_the_total_timeout(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    release = threading.Event()
    receiver.answer(Answer(200, hold=release))
    _endpoint(sessions, owner, receiver.url())
    document_id = finished_document(sessions, owner, pages=1)
    try:
        _send(sessions, webhook_settings)
    finally:
        release.set()
    [delivery] = deliveries_of(sessions, document_id)
    [attempt] = _attempts(sessions, delivery.id)
    assert delivery.state == "retrying" and attempt.status_code is None
    assert attempt.error == "no answer within 3 s" and 2900 <= attempt.latency_ms < 5000


def test_a_rotated_secret_signs_alongside_the_new_one_during_its_grace(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    endpoint_id, old = _endpoint(sessions, owner, receiver.url())
    with sessions.begin() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        assert endpoint is not None
        new = rotate_endpoint_secret(session, endpoint, grace_s=3600)
    finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings)
    [during] = receiver.requests()
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.signed_by(new) and during.signed_by(old)

    with sessions.begin() as session:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(previous_secret_expires_at=func.now() - timedelta(seconds=1))
        )
    finished_document(sessions, owner, pages=1)
    _send(sessions, webhook_settings)
    after = receiver.requests()[1]
    assert after.signed_by(new) and not after.signed_by(old)


def test_a_per_document_url_is_signed_with_the_tenant_secret(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    from scriptorium.webhooks.endpoints import rotate_tenant_secret

    with sessions.begin() as session:
        _, tenant_secret = rotate_tenant_secret(session, owner.id, grace_s=60)
    document_id = finished_document(sessions, owner, pages=1, webhook_url=receiver.url("/this-document"))
    _send(sessions, webhook_settings)
    [request] = receiver.requests()
    assert request.path == "/this-document" and request.signed_by(tenant_secret)
    assert request.json["data"]["document_id"] == str(document_id)
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.endpoint_id is None and delivery.state == "delivered"


def test_deliveries_that_cannot_be_sent_any_more_are_dead_with_a_reason(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    endpoint_id, _ = _endpoint(sessions, owner, receiver.url())
    document_id = finished_document(sessions, owner, pages=1, webhook_url=receiver.url("/no-tenant-secret"))
    with sessions.begin() as session:
        session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id).values(enabled=False)
        )
    _send(sessions, webhook_settings)
    assert receiver.connections == 0
    reasons = sorted(d.last_error or "" for d in deliveries_of(sessions, document_id))
    assert [d.state for d in deliveries_of(sessions, document_id)] == ["dead", "dead"]
    assert reasons == ["the endpoint is disabled (by the client)", "the tenant has no webhook signing secret"]


def test_concurrent_last_pages_produce_one_event_and_one_delivery(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _endpoint(sessions, owner, receiver.url())
    with sessions.begin() as session:
        document_id = builders.document_with_pages(session, owner, pages=6).id
    claims = [claim(sessions, document_id, page_no) for page_no in range(1, 7)]
    barrier = threading.Barrier(len(claims))
    errors: list[BaseException] = []

    def finish(claimed: PageClaim) -> None:
        try:
            barrier.wait()
            record(sessions, claimed)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=finish, args=(claimed,)) for claimed in claims]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(events_of(sessions, document_id)) == 1
    assert len(deliveries_of(sessions, document_id)) == 1
    _send(sessions, webhook_settings)
    assert len(receiver.requests()) == 1


def test_a_sender_that_dies_after_claiming_loses_nothing(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _endpoint(sessions, owner, receiver.url())
    document_id = finished_document(sessions, owner, pages=1)
    with sessions.begin() as session:
        [abandoned] = claim_due(session, limit=10, lease_s=1, public_url="http://unused")
    _send(sessions, webhook_settings)
    assert receiver.requests() == []  # still leased by the dead sender
    time.sleep(1.2)
    _send(sessions, webhook_settings)
    [request] = receiver.requests()
    assert request.webhook_id == abandoned.message_id

    policy = RetryPolicy(schedule_s=(1,), jitter=0, retry_after_max_s=1)
    late = SentAttempt(result=AttemptResult(500, "HTTP 500"), started_at=datetime.now(UTC), latency_ms=5)
    with sessions.begin() as session:
        assert record_attempt(session, abandoned, late, policy=policy, rng=random.Random(0)) is None
    [delivery] = deliveries_of(sessions, document_id)
    assert delivery.state == "delivered" and delivery.attempts == 2
    assert sorted(a.status_code or 0 for a in _attempts(sessions, delivery.id)) == [200, 500]


def test_a_sender_run_reports_its_verdicts(
    sessions: sessionmaker[Session], webhook_settings: Settings, receiver: Receiver, owner: Tenant
) -> None:
    _endpoint(sessions, owner, receiver.url())
    finished_document(sessions, owner, pages=1)
    report = WebhookSender(sessions, webhook_settings).run(budget_s=30)
    assert (report.claimed, report.delivered, report.retrying, report.dead) == (1, 1, 0, 0)
    with sessions() as session:
        assert (
            session.execute(
                select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.tenant_id == owner.id)
            ).scalar_one()
            == 1
        )
