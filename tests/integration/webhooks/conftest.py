"""Webhook tests: settings with loopback allowed and short schedules, a receiver, finished documents."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.models import Event, Tenant, WebhookDelivery
from scriptorium.lifecycle.claims import PageClaim, claim_page
from scriptorium.lifecycle.recording import record_page_outcome
from scriptorium.settings import Settings, WebhookSettings
from scriptorium.webhooks.states import DUE_STATES, DeliveryState
from tests.integration.webhooks.receiver import Receiver, running_receiver
from tests.support import builders
from tests.support.units import unit_of_work

TEST_WEBHOOKS: dict[str, Any] = {
    "allow_http": True,
    "allowed_networks": ["127.0.0.0/8"],
    "connect_timeout_s": 2.0,
    "total_timeout_s": 3.0,
    "retry_schedule_s": [1, 1, 1],
    "retry_jitter": 0.0,
    "poll_interval_s": 0.5,
    "claim_lease_s": 5,
    "batch_size": 8,
}


def webhook_env_vars(**overrides: Any) -> dict[str, str]:
    """The same settings as SCRIPTORIUM_WEBHOOKS__* variables, for the processes tests start."""
    values = {**TEST_WEBHOOKS, **overrides}
    return {
        f"SCRIPTORIUM_WEBHOOKS__{name.upper()}": json.dumps(value)
        if isinstance(value, list | bool)
        else str(value)
        for name, value in values.items()
    }


def with_webhooks(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={"webhooks": WebhookSettings(**{**TEST_WEBHOOKS, **overrides})})


@pytest.fixture(scope="session")
def webhook_settings(settings: Settings) -> Settings:
    return with_webhooks(settings)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as running:
        yield running


@pytest.fixture
def owner(sessions: sessionmaker[Session]) -> Tenant:
    with sessions.begin() as session:
        return builders.tenant(session).tenant


@pytest.fixture(autouse=True)
def _no_delivery_outlives_its_test(sessions: sessionmaker[Session]) -> Iterator[None]:
    """Senders claim every due delivery in the database; a test's leftovers must not reach the next."""
    yield
    with sessions.begin() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.state.in_(DUE_STATES))
            .values(state=DeliveryState.DEAD, last_error="left over by a finished test")
        )


def claim(sessions: sessionmaker[Session], document_id: uuid.UUID, page_no: int) -> PageClaim:
    with sessions.begin() as session:
        claimed = claim_page(session, document_id, page_no, owner="test", lease_s=60)
        assert claimed is not None
        return claimed


def record(sessions: sessionmaker[Session], claimed: PageClaim, *, fail: bool = False) -> None:
    """Record a claimed page's result through the product's guarded transition."""
    outcome = builders.page_outcome(fail=fail, markdown=f"SECRET PAGE TEXT {claimed.page_no}")
    with unit_of_work(sessions) as uow:
        record_page_outcome(uow, claimed, outcome)


def finished_document(
    sessions: sessionmaker[Session],
    owner: Tenant,
    *,
    pages: int = 2,
    failed: tuple[int, ...] = (),
    webhook_url: str | None = None,
) -> uuid.UUID:
    """A document whose pages were all read, so it went terminal and emitted its event."""
    with sessions.begin() as session:
        document_id = builders.document_with_pages(session, owner, pages=pages, webhook_url=webhook_url).id
    for page_no in range(1, pages + 1):
        record(sessions, claim(sessions, document_id, page_no), fail=page_no in failed)
    return document_id


def deliveries_of(sessions: sessionmaker[Session], document_id: uuid.UUID) -> list[WebhookDelivery]:
    with sessions() as session:
        return list(
            session.execute(
                select(WebhookDelivery)
                .where(WebhookDelivery.document_id == document_id)
                .order_by(WebhookDelivery.created_at)
            ).scalars()
        )


def events_of(sessions: sessionmaker[Session], document_id: uuid.UUID) -> list[Event]:
    with sessions() as session:
        return list(session.execute(select(Event).where(Event.document_id == document_id)).scalars())
