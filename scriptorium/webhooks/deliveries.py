"""The delivery state machine in SQL: claim due deliveries, record attempts, replay.

``pending → delivered | retrying → … → dead``. A sender claims due rows with
``FOR UPDATE SKIP LOCKED`` and stamps each with a lease token and expiry, then sends outside
any transaction. Its result is written only under that token, so a sender that died (its
lease expired and another sender took the row over) cannot overwrite the newer outcome;
every attempt is logged regardless.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from scriptorium.db.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookTenantSecret
from scriptorium.errors import Conflict
from scriptorium.leases import expired, lease_until
from scriptorium.webhooks.endpoints import active_secrets
from scriptorium.webhooks.payloads import render_body
from scriptorium.webhooks.schedule import AttemptResult, RetryPolicy, Verdict
from scriptorium.webhooks.states import DUE_STATES, DeliveryState

GONE_REASON = "the receiver answered 410 Gone"


@dataclass(frozen=True)
class DeliveryClaim:
    """Everything a sender needs to make one attempt; secrets stay out of reprs and logs."""

    delivery_id: uuid.UUID
    lease_token: uuid.UUID
    attempt_no: int
    failures_before: int
    message_id: str
    event_type: str
    url: str
    endpoint_id: uuid.UUID | None
    body: bytes = field(repr=False)
    signing_secrets: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True)
class SentAttempt:
    """What happened when a sender tried a claim."""

    result: AttemptResult
    started_at: datetime
    latency_ms: int
    address: str | None = None  # the checked IP connected to; None when refused before connecting
    response_excerpt: str | None = None


@dataclass(frozen=True)
class _Target:
    url: str
    signing_secrets: tuple[str, ...]


class ReplayRefused(Conflict):
    """The delivery cannot be replayed (e.g. its endpoint is disabled)."""


def database_now(session: Session) -> datetime:
    value: datetime = session.execute(select(func.now())).scalar_one()
    return value


def claim_due(session: Session, *, limit: int, lease_s: int, public_url: str) -> list[DeliveryClaim]:
    """Lease up to ``limit`` due deliveries; ones that can no longer be sent become dead here."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.state.in_(DUE_STATES),
            WebhookDelivery.next_attempt_at <= func.now(),
            or_(WebhookDelivery.lease_expires_at.is_(None), expired(WebhookDelivery.lease_expires_at)),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    rows = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == due.c.id)
        .values(
            lease_token=func.gen_random_uuid(),
            lease_expires_at=lease_until(lease_s),
            attempts=WebhookDelivery.attempts + 1,
            updated_at=func.now(),
        )
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.lease_token,
            WebhookDelivery.attempts,
            WebhookDelivery.failures,
            WebhookDelivery.message_id,
            WebhookDelivery.event_type,
            WebhookDelivery.event_id,
            WebhookDelivery.endpoint_id,
            WebhookDelivery.tenant_id,
            WebhookDelivery.url,
        )
    ).all()
    if not rows:
        return []
    now = database_now(session)
    events = _by_id(session, Event, {row.event_id for row in rows})
    endpoints = _by_id(session, WebhookEndpoint, {row.endpoint_id for row in rows if row.endpoint_id})
    tenant_secrets = {
        secret.tenant_id: secret
        for secret in session.execute(
            select(WebhookTenantSecret).where(
                WebhookTenantSecret.tenant_id.in_({row.tenant_id for row in rows if row.endpoint_id is None})
            )
        ).scalars()
    }
    claims: list[DeliveryClaim] = []
    for row in rows:
        target = _target(row, endpoints, tenant_secrets, now)
        if isinstance(target, str):
            endpoint_url = endpoints[row.endpoint_id].url if row.endpoint_id else ""
            _give_up(session, row, target, row.url or endpoint_url, now)
            continue
        event = events[row.event_id]
        claims.append(
            DeliveryClaim(
                delivery_id=row.id,
                lease_token=row.lease_token,
                attempt_no=row.attempts,
                failures_before=row.failures,
                message_id=row.message_id,
                event_type=row.event_type,
                url=target.url,
                endpoint_id=row.endpoint_id,
                body=render_body(
                    event_type=event.type,
                    occurred_at=event.created_at,
                    payload=event.payload,
                    public_url=public_url,
                ),
                signing_secrets=target.signing_secrets,
            )
        )
    return claims


def _by_id(session: Session, model: Any, ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not ids:
        return {}
    return {row.id: row for row in session.execute(select(model).where(model.id.in_(ids))).scalars()}


def _target(
    row: Any,
    endpoints: dict[uuid.UUID, WebhookEndpoint],
    tenant_secrets: dict[uuid.UUID, WebhookTenantSecret],
    now: datetime,
) -> _Target | str:
    """Where and with which secrets to send, or why the delivery can no longer be sent."""
    if row.endpoint_id is None:
        secret = tenant_secrets.get(row.tenant_id)
        if secret is None:
            return "the tenant has no webhook signing secret"
        signing = active_secrets(
            secret.secret, secret.previous_secret, secret.previous_secret_expires_at, now
        )
        return _Target(url=row.url, signing_secrets=signing)
    endpoint = endpoints[row.endpoint_id]
    if endpoint.deleted_at is not None:
        return "the endpoint was deleted"
    if not endpoint.enabled:
        return f"the endpoint is disabled ({endpoint.disabled_reason or 'by the client'})"
    signing = active_secrets(
        endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now
    )
    if not signing:
        return "the endpoint has no secret"
    return _Target(url=endpoint.url, signing_secrets=signing)


def _give_up(session: Session, row: Any, reason: str, url: str, now: datetime) -> None:
    session.add(
        WebhookAttempt(
            delivery_id=row.id,
            attempt_no=row.attempts,
            url=url,
            started_at=now,
            latency_ms=0,
            error=reason,
        )
    )
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == row.id)
        .values(
            state=DeliveryState.DEAD,
            lease_token=None,
            lease_expires_at=None,
            last_status_code=None,
            last_error=reason,
            updated_at=func.now(),
        )
    )


def record_attempt(
    session: Session, claim: DeliveryClaim, sent: SentAttempt, *, policy: RetryPolicy, rng: random.Random
) -> Verdict | None:
    """Log the attempt and move the delivery on; None when the claim's lease was lost meanwhile."""
    now = database_now(session)
    session.add(
        WebhookAttempt(
            delivery_id=claim.delivery_id,
            attempt_no=claim.attempt_no,
            url=claim.url,
            address=sent.address,
            started_at=sent.started_at,
            latency_ms=sent.latency_ms,
            status_code=sent.result.status_code,
            error=sent.result.error,
            response_excerpt=sent.response_excerpt,
        )
    )
    decision = policy.decide(sent.result, failures_before=claim.failures_before, rng=rng, now=now)
    values: dict[str, Any] = {
        "lease_token": None,
        "lease_expires_at": None,
        "last_status_code": sent.result.status_code,
        "last_error": sent.result.error,
        "updated_at": func.now(),
    }
    if decision.verdict is Verdict.DELIVERED:
        values.update(state=DeliveryState.DELIVERED, failures=0, delivered_at=func.now())
    elif decision.verdict is Verdict.RETRY:
        values.update(
            state=DeliveryState.RETRYING,
            failures=claim.failures_before + 1,
            next_attempt_at=func.now() + timedelta(seconds=decision.delay_s),
        )
    else:
        values.update(state=DeliveryState.DEAD, failures=claim.failures_before + 1)
        if decision.verdict is Verdict.GONE:
            values["last_error"] = GONE_REASON
    updated = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == claim.delivery_id, WebhookDelivery.lease_token == claim.lease_token)
        .values(**values)
        .returning(WebhookDelivery.id)
    ).first()
    if updated is None:
        return None
    if decision.verdict is Verdict.GONE and claim.endpoint_id is not None:
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == claim.endpoint_id)
            .values(enabled=False, disabled_reason=GONE_REASON, updated_at=func.now())
        )
    return decision.verdict


def replay(session: Session, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    """Send a delivery again as soon as possible, with the same ``webhook-id``; None if unknown."""
    delivery = session.execute(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id)
        .with_for_update()
    ).scalar_one_or_none()
    if delivery is None:
        return None
    now = database_now(session)
    if delivery.lease_expires_at is not None and delivery.lease_expires_at > now:
        raise ReplayRefused("delivery_in_flight", "the delivery is being sent right now; try again shortly")
    if delivery.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is None or endpoint.deleted_at is not None or not endpoint.enabled:
            raise ReplayRefused("endpoint_disabled", "the endpoint is disabled or deleted; enable it first")
    delivery.state = DeliveryState.PENDING
    delivery.failures = 0
    delivery.next_attempt_at = func.now()
    delivery.lease_token = None
    delivery.lease_expires_at = None
    delivery.updated_at = func.now()
    session.flush()
    session.refresh(delivery)
    return delivery
