"""Watched prefixes: new objects under a bucket prefix become documents automatically.

Objects arrive by S3 bucket notifications — point a MinIO webhook target at the watch's
``notification_url`` with ``Authorization: Bearer <token>`` — and, as a fallback for servers
without notifications, by polling (ListObjects after a persisted marker). An object is one
document however many times and ways it is seen.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, SessionDep, TenantDep, UnitOfWorkDep, public_base_url
from api.errors import ApiError
from api.pagination import INT64_MAX, decode_number_cursor
from api.schemas import ErrorDetail, ErrorResponse, error_responses
from scriptorium.acceptance import DocumentOptions, resolve_spec
from scriptorium.batches.notifications import created_objects
from scriptorium.batches.states import WatchObjectState
from scriptorium.batches.watches import (
    SeenBy,
    SeenObject,
    create_watch,
    find_watch,
    in_scope,
    object_counts,
    record_objects,
    rotate_token,
    token_matches,
)
from scriptorium.db.models import Tenant, Watch, WatchObject
from scriptorium.errors import NotFound
from scriptorium.logging import bind_context, get_logger
from scriptorium.sources import SourceRegistry
from scriptorium.states import Lane

router = APIRouter(prefix="/v1/watches", tags=["watches"])
log = get_logger(__name__)

ERRORS = error_responses(401, 404, 422, 429)


class WatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(max_length=64, description="a configured source's name")
    bucket: str = Field(min_length=1, max_length=255)
    prefix: str = Field(default="", max_length=1024, description="only keys starting with this")
    name: str | None = Field(default=None, max_length=200)
    options: DocumentOptions = Field(
        default_factory=DocumentOptions,
        description="task, mode, policy, pages, metadata, priority, dedup, model",
    )


class WatchPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    name: str | None = Field(default=None, max_length=200)


class WatchOut(BaseModel):
    id: uuid.UUID
    name: str | None
    source: str
    bucket: str
    prefix: str
    options: dict[str, Any]
    enabled: bool
    notification_url: str = Field(description="where the S3 server posts bucket notifications")
    poll_marker: str | None = Field(description="polling lists keys after this one")
    polled_at: datetime | None
    objects: dict[str, int] = Field(description="objects seen, by state")
    created_at: datetime
    updated_at: datetime


class WatchCreated(WatchOut):
    token: str = Field(description="bearer token for notifications; shown only in this response")


class WatchList(BaseModel):
    items: list[WatchOut]


class TokenOut(BaseModel):
    token: str = Field(description="the new notification token; shown only in this response")


class WatchObjectOut(BaseModel):
    id: int
    key: str
    etag: str
    size_bytes: int | None
    state: str
    document_id: uuid.UUID | None
    notified_at: datetime | None = Field(description="when a bucket notification reported it")
    listed_at: datetime | None = Field(description="when polling listed it")
    error: ErrorDetail | None
    created_at: datetime


class WatchObjectList(BaseModel):
    items: list[WatchObjectOut]
    next_cursor: str | None


class NotificationAccepted(BaseModel):
    objects: int = Field(description="created objects in the notification under the watched prefix")
    new: int = Field(description="objects the watch had not seen before")


def _out(session: Session, watch: Watch, base_url: str) -> dict[str, Any]:
    return WatchOut(
        id=watch.id,
        name=watch.name,
        source=watch.source,
        bucket=watch.bucket,
        prefix=watch.prefix,
        options=watch.options,
        enabled=watch.enabled,
        notification_url=f"{base_url}/v1/watches/{watch.id}/notifications",
        poll_marker=watch.poll_marker,
        polled_at=watch.polled_at,
        objects=object_counts(session, watch.id),
        created_at=watch.created_at,
        updated_at=watch.updated_at,
    ).model_dump()


def _own(session: Session, tenant: Tenant, watch_id: uuid.UUID) -> Watch:
    watch = find_watch(session, watch_id, tenant.id)
    if watch is None:
        raise NotFound(f"no watch {watch_id}")
    return watch


@router.post(
    "",
    status_code=201,
    response_model=WatchCreated,
    responses=ERRORS,
    summary="Watch a bucket prefix of a configured source; the response carries the notification token",
)
def create(
    body: WatchIn, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> WatchCreated:
    SourceRegistry(runtime.settings.sources).check(body.source, tenant_name=tenant.name, bucket=body.bucket)
    resolve_spec(
        body.options,
        tenant_policy=tenant.routing_policy,
        default_priority=Lane.BULK,
        models=runtime.settings.models,
        tenant_model=tenant.default_model,
    )
    watch, token = create_watch(
        uow.session,
        tenant.id,
        source=body.source,
        bucket=body.bucket,
        prefix=body.prefix,
        options=body.options,
        name=body.name,
    )
    uow.commit()
    log.info("watch.created", watch_id=str(watch.id))
    return WatchCreated(**_out(uow.session, watch, public_base_url(request, runtime)), token=token)


@router.get("", response_model=WatchList, responses=ERRORS, summary="The tenant's watches")
def list_watches(request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep) -> WatchList:
    watches = session.execute(
        select(Watch)
        .where(Watch.tenant_id == tenant.id, Watch.deleted_at.is_(None))
        .order_by(Watch.created_at, Watch.id)
    ).scalars()
    base_url = public_base_url(request, runtime)
    return WatchList(items=[WatchOut(**_out(session, watch, base_url)) for watch in watches])


@router.get(
    "/{watch_id}", response_model=WatchOut, responses=ERRORS, summary="One watch and its objects by state"
)
def get_watch(
    watch_id: uuid.UUID, request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep
) -> WatchOut:
    return WatchOut(**_out(session, _own(session, tenant, watch_id), public_base_url(request, runtime)))


@router.patch(
    "/{watch_id}", response_model=WatchOut, responses=ERRORS, summary="Pause, resume or rename a watch"
)
def update_watch(
    watch_id: uuid.UUID,
    body: WatchPatch,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    tenant: TenantDep,
) -> WatchOut:
    watch = _own(uow.session, tenant, watch_id)
    if body.enabled is not None:
        watch.enabled = body.enabled
    if "name" in body.model_fields_set:
        watch.name = body.name
    watch.updated_at = func.now()
    uow.commit()
    return WatchOut(**_out(uow.session, watch, public_base_url(request, runtime)))


@router.delete("/{watch_id}", status_code=204, responses=ERRORS, summary="Stop watching; documents stay")
def delete_watch(watch_id: uuid.UUID, uow: UnitOfWorkDep, tenant: TenantDep) -> Response:
    watch = _own(uow.session, tenant, watch_id)
    watch.enabled = False
    watch.deleted_at = func.now()
    watch.updated_at = func.now()
    uow.commit()
    return Response(status_code=204)


@router.post(
    "/{watch_id}/rotate-token",
    response_model=TokenOut,
    responses=ERRORS,
    summary="Replace the notification token (update the S3 server's webhook target with it)",
)
def rotate(watch_id: uuid.UUID, uow: UnitOfWorkDep, tenant: TenantDep) -> TokenOut:
    token = rotate_token(_own(uow.session, tenant, watch_id))
    uow.commit()
    return TokenOut(token=token)


@router.post(
    "/{watch_id}/rescan",
    response_model=WatchOut,
    responses=ERRORS,
    summary="List the whole prefix again at the next poll (objects already seen are not ingested twice)",
)
def rescan(
    watch_id: uuid.UUID, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> WatchOut:
    watch = _own(uow.session, tenant, watch_id)
    watch.poll_marker = None
    watch.polled_at = None
    watch.updated_at = func.now()
    uow.commit()
    return WatchOut(**_out(uow.session, watch, public_base_url(request, runtime)))


@router.get(
    "/{watch_id}/objects",
    response_model=WatchObjectList,
    responses=ERRORS,
    summary="Objects the watch has seen, newest first, with their documents",
)
def objects(
    watch_id: uuid.UUID,
    session: SessionDep,
    tenant: TenantDep,
    state: Annotated[WatchObjectState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query()] = None,
) -> WatchObjectList:
    _own(session, tenant, watch_id)
    query = select(WatchObject).where(WatchObject.watch_id == watch_id)
    if state is not None:
        query = query.where(WatchObject.state == state.value)
    if cursor:
        query = query.where(WatchObject.id < decode_number_cursor(cursor, maximum=INT64_MAX))
    rows = list(session.execute(query.order_by(WatchObject.id.desc()).limit(limit + 1)).scalars())
    return WatchObjectList(
        items=[
            WatchObjectOut(
                id=row.id,
                key=row.key,
                etag=row.etag,
                size_bytes=row.size_bytes,
                state=row.state,
                document_id=row.document_id,
                notified_at=row.notified_at,
                listed_at=row.listed_at,
                error=ErrorDetail(code=row.error_code, message=row.error_message or row.error_code)
                if row.error_code
                else None,
                created_at=row.created_at,
            )
            for row in rows[:limit]
        ],
        next_cursor=str(rows[limit - 1].id) if len(rows) > limit else None,
    )


@router.post(
    "/{watch_id}/notifications",
    response_model=NotificationAccepted,
    responses={401: {"model": ErrorResponse}, 400: {"model": ErrorResponse}},
    summary="Receive S3 bucket notifications (MinIO webhook target); Authorization: Bearer <watch token>",
)
def notifications(
    watch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    payload: Annotated[dict[str, Any], Body(description="an S3 event notification with Records")],
) -> NotificationAccepted:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    watch = find_watch(uow.session, watch_id)
    if watch is None or scheme.lower() != "bearer" or not token or not token_matches(watch, token.strip()):
        raise ApiError(
            401,
            "unauthorized",
            "send Authorization: Bearer <watch token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    bind_context(watch_id=str(watch_id))
    created = created_objects(payload)
    seen = [SeenObject(o.key, o.etag, o.size) for o in created if in_scope(watch, o.bucket, o.key)]
    new = record_objects(uow.session, watch.id, seen, SeenBy.NOTIFICATION) if watch.enabled else 0
    if new:
        uow.outbox.ingest_watch(watch.id)
    uow.commit()
    log.info("watch.notified", objects=len(seen), new=new)
    return NotificationAccepted(objects=len(seen), new=new)
