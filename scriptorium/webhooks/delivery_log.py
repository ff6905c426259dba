"""Reading the delivery log: a tenant's deliveries, newest first, with their attempts."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from scriptorium.db.models import WebhookAttempt, WebhookDelivery
from scriptorium.webhooks.states import DeliveryState


def list_deliveries(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    state: DeliveryState | None = None,
    endpoint_id: uuid.UUID | None = None,
    document_id: uuid.UUID | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state.value)
    if endpoint_id is not None:
        query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if document_id is not None:
        query = query.where(WebhookDelivery.document_id == document_id)
    if before is not None:
        created, ident = before
        query = query.where(
            or_(
                WebhookDelivery.created_at < created,
                and_(WebhookDelivery.created_at == created, WebhookDelivery.id < ident),
            )
        )
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)
    return list(session.execute(query).scalars())


def find_delivery(session: Session, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    return session.execute(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.tenant_id == tenant_id
        )
    ).scalar_one_or_none()


def attempts_of(session: Session, delivery_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[WebhookAttempt]]:
    found: dict[uuid.UUID, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return found
    rows = session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
    ).scalars()
    for attempt in rows:
        found[attempt.delivery_id].append(attempt)
    return found
