"""Webhooks: endpoints and their secrets, the tenant's signing secret, the delivery log and replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, SessionDep, TenantDep, UnitOfWorkDep
from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from api.schemas import error_responses
from scriptorium.db.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from scriptorium.errors import NotFound
from scriptorium.logging import get_logger
from scriptorium.settings import Settings
from scriptorium.webhooks.addresses import check_registration
from scriptorium.webhooks.deliveries import replay
from scriptorium.webhooks.delivery_log import attempts_of, find_delivery, list_deliveries
from scriptorium.webhooks.endpoints import (
    create_endpoint,
    delete_endpoint,
    find_endpoint,
    normalise_event_types,
    rotate_endpoint_secret,
    rotate_tenant_secret,
    set_enabled,
    tenant_secret,
    touch,
)
from scriptorium.webhooks.states import SUBSCRIBABLE_EVENTS, DeliveryState

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
log = get_logger(__name__)

ERRORS = error_responses(401, 404, 409, 422, 429)
EVENT_TYPES_HELP = f"subscribed event types (default: all of {', '.join(SUBSCRIBABLE_EVENTS)})"


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="https URL that receives POSTed events")
    event_types: list[str] | None = Field(None, description=EVENT_TYPES_HELP)
    enabled: bool = True
    description: str | None = Field(None, max_length=500)


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048)
    event_types: list[str] | None = None
    enabled: bool | None = Field(None, description="true re-enables an endpoint disabled by a 410 answer")
    description: str | None = Field(None, max_length=500)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None = Field(
        description="until then the rotated-out secret still signs, next to the current one"
    )
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="the whsec_ signing secret; shown only in this response")


class EndpointList(BaseModel):
    items: list[EndpointOut]


class SecretOut(BaseModel):
    secret: str = Field(description="the new whsec_ signing secret; shown only in this response")
    previous_secret_expires_at: datetime | None


class TenantSecretOut(BaseModel):
    exists: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None
    previous_secret_expires_at: datetime | None = None


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    url: str
    address: str | None = Field(description="the checked IP address connected to; null when refused")
    status_code: int | None
    latency_ms: int
    error: str | None
    response_excerpt: str | None


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: str = Field(description="the webhook-id header: the same on every attempt and replay")
    event_id: uuid.UUID
    event_type: str
    document_id: uuid.UUID | None = Field(description="the document a document.* event is about")
    batch_id: uuid.UUID | None = Field(description="the batch a batch.* event is about")
    endpoint_id: uuid.UUID | None
    url: str | None = Field(description="the document's or batch's own webhook_url, not an endpoint's")
    state: str
    attempt_count: int
    next_attempt_at: datetime | None = Field(description="when the next attempt is due (pending or retrying)")
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
    attempts: list[AttemptOut]


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def _endpoint_fields(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    ).model_dump()


def _delivery_out(delivery: WebhookDelivery, attempts: list[WebhookAttempt]) -> DeliveryOut:
    due = delivery.state in (DeliveryState.PENDING, DeliveryState.RETRYING)
    return DeliveryOut(
        id=delivery.id,
        webhook_id=delivery.message_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        document_id=delivery.document_id,
        batch_id=delivery.batch_id,
        endpoint_id=delivery.endpoint_id,
        url=delivery.url,
        state=delivery.state,
        attempt_count=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at if due else None,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
        updated_at=delivery.updated_at,
        attempts=[
            AttemptOut(
                attempt=attempt.attempt_no,
                started_at=attempt.started_at,
                url=attempt.url,
                address=attempt.address,
                status_code=attempt.status_code,
                latency_ms=attempt.latency_ms,
                error=attempt.error,
                response_excerpt=attempt.response_excerpt,
            )
            for attempt in attempts
        ],
    )


def checked_url(url: str, settings: Settings) -> str:
    """A receiver URL that passes the SSRF checks (TargetRefused, 422, otherwise)."""
    return check_registration(url, settings.webhooks).url


def document_webhook_url(session: Session, tenant_id: uuid.UUID, url: str, settings: Settings) -> str:
    """Validate an upload's ``webhook_url``: it is signed with the tenant's signing secret."""
    if tenant_secret(session, tenant_id) is None:
        raise ApiError(
            422,
            "webhook_secret_missing",
            "create the tenant's signing secret first (POST /v1/webhooks/signing-secret)",
        )
    return checked_url(url, settings)


def _own_endpoint(session: Session, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = find_endpoint(session, tenant_id, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


@router.post(
    "/endpoints",
    status_code=201,
    response_model=EndpointCreated,
    responses=ERRORS,
    summary="Register a receiver; the response carries its signing secret, shown only once",
)
def create(body: EndpointIn, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep) -> EndpointCreated:
    url = checked_url(body.url, runtime.settings)
    endpoint, secret = create_endpoint(
        uow.session,
        tenant.id,
        url=url,
        event_types=normalise_event_types(body.event_types),
        enabled=body.enabled,
        description=body.description,
    )
    uow.commit()
    log.info("webhook.endpoint_created", endpoint_id=str(endpoint.id))
    return EndpointCreated(**_endpoint_fields(endpoint), secret=secret)


@router.get("/endpoints", response_model=EndpointList, responses=ERRORS, summary="The tenant's endpoints")
def list_endpoints(session: SessionDep, tenant: TenantDep) -> EndpointList:
    endpoints = session.execute(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant.id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    ).scalars()
    return EndpointList(items=[EndpointOut(**_endpoint_fields(endpoint)) for endpoint in endpoints])


@router.get("/endpoints/{endpoint_id}", response_model=EndpointOut, responses=ERRORS, summary="One endpoint")
def get_endpoint(endpoint_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> EndpointOut:
    return EndpointOut(**_endpoint_fields(_own_endpoint(session, tenant.id, endpoint_id)))


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=ERRORS,
    summary="Change an endpoint's URL, event types, description, or enable/disable it",
)
def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointPatch, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> EndpointOut:
    endpoint = _own_endpoint(uow.session, tenant.id, endpoint_id)
    if body.url is not None:
        endpoint.url = checked_url(body.url, runtime.settings)
    if body.event_types is not None:
        endpoint.event_types = normalise_event_types(body.event_types)
    if "description" in body.model_fields_set:
        endpoint.description = body.description
    if body.enabled is not None:
        set_enabled(endpoint, body.enabled)
    touch(uow.session, endpoint)
    uow.commit()
    return EndpointOut(**_endpoint_fields(endpoint))


@router.delete(
    "/endpoints/{endpoint_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete an endpoint: nothing more is sent to it; its delivery log stays readable",
)
def remove_endpoint(endpoint_id: uuid.UUID, uow: UnitOfWorkDep, tenant: TenantDep) -> Response:
    delete_endpoint(uow.session, _own_endpoint(uow.session, tenant.id, endpoint_id))
    uow.commit()
    log.info("webhook.endpoint_deleted", endpoint_id=str(endpoint_id))
    return Response(status_code=204)


@router.post(
    "/endpoints/{endpoint_id}/rotate-secret",
    response_model=SecretOut,
    responses=ERRORS,
    summary="Replace the endpoint's secret; the old one keeps signing alongside for the grace period",
)
def rotate_secret(
    endpoint_id: uuid.UUID, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> SecretOut:
    endpoint = _own_endpoint(uow.session, tenant.id, endpoint_id)
    secret = rotate_endpoint_secret(
        uow.session, endpoint, grace_s=runtime.settings.webhooks.secret_rotation_grace_s
    )
    uow.commit()
    log.info("webhook.secret_rotated", endpoint_id=str(endpoint_id))
    return SecretOut(secret=secret, previous_secret_expires_at=endpoint.previous_secret_expires_at)


@router.get(
    "/signing-secret",
    response_model=TenantSecretOut,
    responses=ERRORS,
    summary="Whether the tenant's signing secret (for per-document webhook_url) exists",
)
def get_signing_secret(session: SessionDep, tenant: TenantDep) -> TenantSecretOut:
    row = tenant_secret(session, tenant.id)
    if row is None:
        return TenantSecretOut(exists=False)
    return TenantSecretOut(
        exists=True,
        created_at=row.created_at,
        updated_at=row.updated_at,
        previous_secret_expires_at=row.previous_secret_expires_at,
    )


@router.post(
    "/signing-secret",
    response_model=SecretOut,
    responses=ERRORS,
    summary="Create or rotate the tenant's signing secret for per-document webhook_url deliveries",
)
def rotate_signing_secret(runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep) -> SecretOut:
    row, secret = rotate_tenant_secret(
        uow.session, tenant.id, grace_s=runtime.settings.webhooks.secret_rotation_grace_s
    )
    uow.commit()
    log.info("webhook.tenant_secret_rotated")
    return SecretOut(secret=secret, previous_secret_expires_at=row.previous_secret_expires_at)


@router.get(
    "/deliveries",
    response_model=DeliveryList,
    responses=ERRORS,
    summary="The delivery log, newest first: every delivery with its attempts",
)
def deliveries(
    session: SessionDep,
    tenant: TenantDep,
    state: Annotated[DeliveryState | None, Query()] = None,
    endpoint_id: Annotated[uuid.UUID | None, Query()] = None,
    document_id: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> DeliveryList:
    rows = list_deliveries(
        session,
        tenant.id,
        limit=limit + 1,
        state=state,
        endpoint_id=endpoint_id,
        document_id=document_id,
        before=decode_cursor(cursor) if cursor else None,
    )
    page = rows[:limit]
    attempts = attempts_of(session, [delivery.id for delivery in page])
    return DeliveryList(
        items=[_delivery_out(delivery, attempts[delivery.id]) for delivery in page],
        next_cursor=encode_cursor(rows[limit - 1]) if len(rows) > limit else None,
    )


@router.get("/deliveries/{delivery_id}", response_model=DeliveryOut, responses=ERRORS, summary="One delivery")
def get_delivery(delivery_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> DeliveryOut:
    delivery = find_delivery(session, tenant.id, delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return _delivery_out(delivery, attempts_of(session, [delivery.id])[delivery.id])


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryOut,
    responses=ERRORS,
    summary="Send a delivery again now, with the same webhook-id",
)
def replay_delivery(
    delivery_id: uuid.UUID, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> DeliveryOut:
    delivery = replay(uow.session, tenant.id, delivery_id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    uow.outbox.deliver_webhooks()
    uow.commit()
    log.info("webhook.replay", delivery_id=str(delivery_id))
    return _delivery_out(delivery, attempts_of(uow.session, [delivery.id])[delivery.id])
