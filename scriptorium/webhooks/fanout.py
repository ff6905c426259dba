"""Turning an event into delivery rows, inside the transaction that writes the event.

Each enabled endpoint of the tenant subscribed to the event's type gets one delivery, and so
does the subject's own ``webhook_url`` (a document's, or a batch's for batch events) when it has
one. Unique constraints make a second fan-out of the same event impossible.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from scriptorium.db.models import Event, WebhookDelivery, WebhookEndpoint
from scriptorium.webhooks.payloads import message_id


class EventSubject(Protocol):
    """What an event is about (a document or a batch): it may name its own receiver."""

    @property
    def webhook_url(self) -> str | None: ...


def create_deliveries(session: Session, event: Event, subject: EventSubject) -> list[WebhookDelivery]:
    endpoint_ids = session.execute(
        select(WebhookEndpoint.id)
        .where(
            WebhookEndpoint.tenant_id == event.tenant_id,
            WebhookEndpoint.enabled.is_(True),
            WebhookEndpoint.deleted_at.is_(None),
            WebhookEndpoint.event_types.contains([event.type]),
        )
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).scalars()
    targets: list[tuple[uuid.UUID | None, str | None]] = [(endpoint_id, None) for endpoint_id in endpoint_ids]
    if subject.webhook_url:
        targets.append((None, subject.webhook_url))
    deliveries = [
        WebhookDelivery(
            tenant_id=event.tenant_id,
            event_id=event.id,
            document_id=event.document_id,
            batch_id=event.batch_id,
            endpoint_id=endpoint_id,
            url=url,
            event_type=event.type,
            message_id=message_id(event.id),
        )
        for endpoint_id, url in targets
    ]
    session.add_all(deliveries)
    session.flush()
    return deliveries
