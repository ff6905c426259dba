"""Endpoints and signing secrets: creation, rotation with a grace period, soft deletion.

A new secret is returned to the caller once and only kept in the database, where the sender
needs it in clear to sign. A rotated-out secret keeps signing next to the new one until its
grace period ends, so receivers can switch without dropping a delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from scriptorium.db.models import WebhookEndpoint, WebhookTenantSecret
from scriptorium.errors import DomainError
from scriptorium.webhooks.signing import generate_secret
from scriptorium.webhooks.states import SUBSCRIBABLE_EVENTS


class UnknownEventType(DomainError):
    """An event type nobody can subscribe to."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_event_types", message)


def normalise_event_types(event_types: Iterable[str] | None) -> list[str]:
    """The subscribed types, sorted and unique; None means every type."""
    if event_types is None:
        return sorted(SUBSCRIBABLE_EVENTS)
    chosen = sorted(set(event_types))
    unknown = [event for event in chosen if event not in SUBSCRIBABLE_EVENTS]
    if unknown or not chosen:
        raise UnknownEventType(
            f"event types must be a non-empty subset of {', '.join(SUBSCRIBABLE_EVENTS)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return chosen


def active_secrets(
    current: str | None, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> tuple[str, ...]:
    """The secrets that sign right now: the current one, and a rotated-out one in its grace period."""
    signing = [current] if current else []
    if previous and previous_expires_at is not None and previous_expires_at > now:
        signing.append(previous)
    return tuple(signing)


def create_endpoint(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    url: str,
    event_types: list[str],
    enabled: bool = True,
    description: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (the only time the secret leaves the database)."""
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        url=url,
        event_types=event_types,
        enabled=enabled,
        description=description,
        secret=secret,
    )
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)
    return endpoint, secret


def find_endpoint(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
    return session.execute(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.tenant_id == tenant_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
    ).scalar_one_or_none()


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    endpoint.enabled = enabled
    endpoint.disabled_reason = None if enabled else "disabled by the client"


def touch(session: Session, endpoint: WebhookEndpoint) -> None:
    endpoint.updated_at = func.now()
    session.flush()
    session.refresh(endpoint)


def rotate_endpoint_secret(session: Session, endpoint: WebhookEndpoint, *, grace_s: int) -> str:
    secret = generate_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = func.now() + timedelta(seconds=grace_s)
    endpoint.secret = secret
    touch(session, endpoint)
    return secret


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Soft delete: its delivery log stays readable; its secrets are wiped."""
    endpoint.deleted_at = func.now()
    endpoint.enabled = False
    endpoint.disabled_reason = "deleted"
    endpoint.secret = None
    endpoint.previous_secret = None
    endpoint.previous_secret_expires_at = None
    touch(session, endpoint)


def tenant_secret(session: Session, tenant_id: uuid.UUID) -> WebhookTenantSecret | None:
    return session.get(WebhookTenantSecret, tenant_id)


def rotate_tenant_secret(
    session: Session, tenant_id: uuid.UUID, *, grace_s: int
) -> tuple[WebhookTenantSecret, str]:
    """Create the tenant's signing secret, or replace it keeping the old one for ``grace_s``."""
    secret = generate_secret()
    statement = insert(WebhookTenantSecret).values(tenant_id=tenant_id, secret=secret)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[WebhookTenantSecret.tenant_id],
            set_={
                "previous_secret": WebhookTenantSecret.secret,
                "previous_secret_expires_at": func.now() + timedelta(seconds=grace_s),
                "secret": statement.excluded.secret,
                "updated_at": func.now(),
            },
        )
    )
    row = session.get(WebhookTenantSecret, tenant_id, populate_existing=True)
    assert row is not None
    return row, secret
