"""Batches: many inputs as one unit — from an archive, a bucket prefix, a manifest or client uploads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, SessionDep, TenantDep, UnitOfWorkDep, public_base_url
from api.errors import ApiError
from api.forms import accepted, document_options
from api.pagination import INT32_MAX, decode_cursor, decode_number_cursor, encode_cursor
from api.presenters import present_batch, present_batch_item, present_document
from api.routes.webhooks import document_webhook_url
from api.runtime import ApiRuntime
from api.schemas import (
    BatchItemList,
    BatchList,
    BatchOut,
    DocumentList,
    DocumentOut,
    RetryOut,
    error_responses,
)
from scriptorium.acceptance import Dedup, DocumentOptions, intake_stream, resolve_spec
from scriptorium.batches.archives import archive_format
from scriptorium.batches.control import (
    BatchConflict,
    NewBatch,
    add_uploaded_item,
    batch_object_key,
    cancel_batch,
    close_batch,
    create_batch,
    own_batch,
    retry_failed,
)
from scriptorium.batches.queries import batch_status, current_documents, list_items
from scriptorium.batches.report import csv_chunks, json_chunks, report_rows, summary
from scriptorium.batches.states import BatchKind, BatchState, IntakeReason, ItemState
from scriptorium.db.models import Batch, Tenant
from scriptorium.errors import NotFound
from scriptorium.idempotency import find_by_key
from scriptorium.lifecycle.documents import page_state_counts
from scriptorium.logging import bind_context, get_logger
from scriptorium.sources import SourceRegistry, parse_s3_uri
from scriptorium.states import Lane
from scriptorium.storage import StoredObject, raw_key

router = APIRouter(prefix="/v1/batches", tags=["batches"])
log = get_logger(__name__)

ERRORS = error_responses(401, 404, 409, 413, 422, 429, 503)
ARCHIVE_SNIFF_BYTES = 512


def _present(session: Session, batch: Batch, base_url: str) -> BatchOut:
    return present_batch(batch, batch_status(session, batch.id), base_url)


def _own(session: Session, tenant: Tenant, batch_id: uuid.UUID) -> Batch:
    batch = own_batch(session, tenant.id, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


def _store_upload(runtime: ApiRuntime, upload: UploadFile, key: str, *, limit: int) -> StoredObject:
    return runtime.store.put_stream(key, upload.file, limit=limit)


def _archive_source(
    runtime: ApiRuntime, tenant: Tenant, batch_id: uuid.UUID, archive: UploadFile
) -> dict[str, Any]:
    head = archive.file.read(ARCHIVE_SNIFF_BYTES)
    archive.file.seek(0)
    if archive_format(head) is None:
        raise ApiError(
            422, IntakeReason.ARCHIVE_UNSUPPORTED, "the archive must be a zip or a tar (.gz, .bz2, .xz)"
        )
    key = batch_object_key(tenant.id, batch_id, "archive")
    stored = _store_upload(runtime, archive, key, limit=runtime.settings.limits.max_upload_bytes)
    return {"key": key, "filename": archive.filename, "size_bytes": stored.size, "sha256": stored.sha256}


def _manifest_source(
    runtime: ApiRuntime, tenant: Tenant, batch_id: uuid.UUID, manifest: UploadFile
) -> dict[str, Any]:
    key = batch_object_key(tenant.id, batch_id, "manifest.jsonl")
    stored = _store_upload(runtime, manifest, key, limit=runtime.settings.intake.manifest_max_bytes)
    return {"key": key, "filename": manifest.filename, "size_bytes": stored.size, "sha256": stored.sha256}


def _prefix_source(runtime: ApiRuntime, tenant: Tenant, prefix: str) -> dict[str, Any]:
    ref = parse_s3_uri(prefix, require_key=False)
    SourceRegistry(runtime.settings.sources).check(ref.source, tenant_name=tenant.name, bucket=ref.bucket)
    return {"source": ref.source, "bucket": ref.bucket, "prefix": ref.key}


@router.post(
    "",
    status_code=202,
    response_model=BatchOut,
    responses=ERRORS,
    summary="Create a batch from an archive, a bucket prefix, a manifest, or for uploads one by one",
)
def create(
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    tenant: TenantDep,
    name: Annotated[str | None, Form(max_length=200, description="a label (default: from the input)")] = None,
    archive: Annotated[
        UploadFile | None, File(description="a zip or tar(.gz|.bz2|.xz) whose files become documents")
    ] = None,
    manifest: Annotated[
        UploadFile | None,
        File(description='JSONL, one {"uri": "s3://source/bucket/key", …per-document options} per line'),
    ] = None,
    prefix: Annotated[
        str | None, Form(description="s3://source/bucket/prefix: every object under it becomes a document")
    ] = None,
    pages: Annotated[str | None, Form(description="pages to read of every document, e.g. 1-3")] = None,
    mode: Annotated[str | None, Form(description="auto, or a fixed mode")] = None,
    task: Annotated[Literal["markdown", "free_ocr", "figure"] | None, Form()] = None,
    policy: Annotated[str | None, Form(description="routing policy JSON")] = None,
    metadata: Annotated[str | None, Form(description="a JSON object stored with every document")] = None,
    priority: Annotated[Lane, Form(description="bulk (default) or interactive")] = Lane.BULK,
    dedup: Annotated[bool, Form(description="reuse results of identical earlier documents")] = True,
    model: Annotated[
        str | None,
        Form(
            max_length=64,
            description="the model family that reads every document (deepseek-ocr or unlimited-ocr; "
            "a manifest line may name its own); default: the tenant's default, then the fleet's",
        ),
    ] = None,
    webhook_url: Annotated[
        str | None, Form(description="POST batch events here, signed with the tenant's signing secret")
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    """With none of ``archive``, ``manifest`` and ``prefix`` the batch is *open*: upload files into it
    (``POST /v1/batches/{id}/documents``), then close it."""
    settings = runtime.settings
    session = uow.session
    base_url = public_base_url(request, runtime)
    if existing := find_by_key(session, Batch, tenant.id, idempotency_key):
        return accepted(_present(session, existing, base_url), settings.api.retry_after_s, replay=True)
    given = [
        kind for kind, value in (("archive", archive), ("manifest", manifest), ("prefix", prefix)) if value
    ]
    if len(given) > 1:
        raise ApiError(
            422, "invalid_request", f"give one of archive, manifest and prefix, not {' and '.join(given)}"
        )
    options, _ = document_options(
        tenant,
        task=task,
        mode=mode,
        policy=policy,
        pages=pages,
        metadata=metadata,
        priority=priority,
        dedup=dedup,
        default_priority=Lane.BULK,
        models=settings.models,
        model=model,
    )
    checked_webhook = document_webhook_url(session, tenant.id, webhook_url, settings) if webhook_url else None
    batch_id = uuid.uuid4()
    bind_context(batch_id=str(batch_id))
    if archive is not None:
        kind, source = BatchKind.ARCHIVE, _archive_source(runtime, tenant, batch_id, archive)
    elif manifest is not None:
        kind, source = BatchKind.MANIFEST, _manifest_source(runtime, tenant, batch_id, manifest)
    elif prefix:
        kind, source = BatchKind.PREFIX, _prefix_source(runtime, tenant, prefix)
    else:
        kind, source = BatchKind.UPLOADS, {}
    label = name or source.get("filename") or (prefix if prefix else f"batch {batch_id}")
    batch, replayed = create_batch(
        uow,
        tenant.id,
        NewBatch(
            name=str(label)[:200],
            kind=kind,
            source=source,
            options=options,
            webhook_url=checked_webhook,
            idempotency_key=idempotency_key,
            request_id=request.state.request_id,
        ),
        batch_id=batch_id,
    )
    uow.commit()
    if replayed and "key" in source:
        runtime.store.delete(str(source["key"]))
    log.info("batch.created", kind=kind.value, replayed=replayed)
    return accepted(_present(session, batch, base_url), settings.api.retry_after_s, replay=replayed)


def _decode_seq(cursor: str | None) -> int:
    if not cursor:
        return 0
    return decode_number_cursor(cursor, maximum=INT32_MAX)


@router.get("", response_model=BatchList, responses=ERRORS, summary="List batches, newest first")
def list_batches(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
    name: Annotated[str | None, Query(description="only batches with this name")] = None,
    state: Annotated[BatchState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> BatchList:
    query = select(Batch).where(Batch.tenant_id == tenant.id)
    if name is not None:
        query = query.where(Batch.name == name)
    if state is not None:
        query = query.where(Batch.state == state.value)
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            or_(Batch.created_at < created, and_(Batch.created_at == created, Batch.id < ident))
        )
    rows = list(
        session.execute(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)).scalars()
    )
    base_url = public_base_url(request, runtime)
    return BatchList(
        items=[_present(session, batch, base_url) for batch in rows[:limit]],
        next_cursor=encode_cursor(rows[limit - 1]) if len(rows) > limit else None,
    )


@router.get(
    "/{batch_id}", response_model=BatchOut, responses=ERRORS, summary="A batch's counts, tokens and progress"
)
def get_batch(
    batch_id: uuid.UUID, request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep
) -> BatchOut:
    return _present(session, _own(session, tenant, batch_id), public_base_url(request, runtime))


@router.post(
    "/{batch_id}/documents",
    status_code=202,
    response_model=DocumentOut,
    responses=ERRORS,
    summary="Upload one file into an open batch (with the batch's options)",
)
def upload_into(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="the document")],
    name: Annotated[str | None, Form(description="what the report calls it (default: the file name)")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    settings = runtime.settings
    session = uow.session
    base_url = public_base_url(request, runtime)
    batch = _own(session, tenant, batch_id)
    if batch.state != BatchState.OPEN:
        raise BatchConflict("batch_not_open", f"the batch is {batch.state}; files go into an open batch only")
    spec = resolve_spec(
        DocumentOptions.parse(batch.options),
        tenant_policy=tenant.routing_policy,
        default_priority=Lane.BULK,
        models=settings.models,
        tenant_model=tenant.default_model,
    )
    label = (name or file.filename or "upload")[:1024]
    document_id = uuid.uuid4()
    bind_context(document_id=str(document_id), batch_id=str(batch_id))
    try:
        intake = intake_stream(
            uow,
            runtime.store,
            file.file,
            limit=settings.limits.max_upload_bytes,
            tenant_id=tenant.id,
            spec=spec,
            filename=file.filename,
            dedup=Dedup.from_settings(settings, enabled=spec.dedup),
            document_id=document_id,
            idempotency_key=idempotency_key,
            request_id=request.state.request_id,
            batch_id=batch_id,
            before_commit=lambda inner, document: add_uploaded_item(inner, batch_id, label, document),
        )
    except BatchConflict:
        runtime.store.delete(raw_key(tenant.id, document_id))
        raise
    uow.commit()
    document = intake.document
    body = present_document(document, page_state_counts(session, document.id), base_url, runtime.store)
    return accepted(body, settings.api.retry_after_s, replay=intake.replayed)


@router.post(
    "/{batch_id}/close",
    response_model=BatchOut,
    responses=ERRORS,
    summary="Close an open batch: no more files; it completes when its documents have",
)
def close(
    batch_id: uuid.UUID, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> BatchOut:
    session = uow.session
    _own(session, tenant, batch_id)
    close_batch(session, batch_id)
    uow.commit()
    return _present(session, _own(session, tenant, batch_id), public_base_url(request, runtime))


@router.get(
    "/{batch_id}/documents",
    response_model=DocumentList,
    responses=ERRORS,
    summary="The batch's current documents (latest attempt of each input), in input order",
)
def documents(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
    state: Annotated[str | None, Query(description="only documents in this state, e.g. failed")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
) -> DocumentList:
    _own(session, tenant, batch_id)
    rows = current_documents(session, batch_id, state=state, after_seq=_decode_seq(cursor), limit=limit + 1)
    base_url = public_base_url(request, runtime)
    return DocumentList(
        items=[
            present_document(d, page_state_counts(session, d.id), base_url, runtime.store)
            for _, d in rows[:limit]
        ],
        next_cursor=str(rows[limit - 1][0]) if len(rows) > limit else None,
    )


@router.get(
    "/{batch_id}/items",
    response_model=BatchItemList,
    responses=ERRORS,
    summary="The batch's inputs in order, with their documents, hashes and history",
)
def items(
    batch_id: uuid.UUID,
    session: SessionDep,
    tenant: TenantDep,
    state: Annotated[ItemState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query()] = None,
) -> BatchItemList:
    _own(session, tenant, batch_id)
    rows = list_items(
        session,
        batch_id,
        after_seq=_decode_seq(cursor),
        limit=limit + 1,
        state=state,
    )
    out = [present_batch_item(item, document) for item, document in rows[:limit]]
    return BatchItemList(items=out, next_cursor=str(rows[limit - 1][0].seq) if len(rows) > limit else None)


@router.post(
    "/{batch_id}/retry-failed",
    status_code=202,
    response_model=RetryOut,
    responses=ERRORS,
    summary="Try every failed input again: a new document each, the failed one kept in its history",
)
def retry(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    tenant: TenantDep,
    include_partial: Annotated[
        bool, Query(description="also retry documents with some failed pages")
    ] = False,
) -> Response:
    session = uow.session
    batch = _own(session, tenant, batch_id)
    retried = retry_failed(uow, batch.id, include_partial=include_partial)
    uow.commit()
    log.info("batch.retried", documents=len(retried.documents), inputs_reset=retried.inputs_reset)
    body = RetryOut(
        batch=_present(session, _own(session, tenant, batch_id), public_base_url(request, runtime)),
        retried_documents=len(retried.documents),
        inputs_reset=retried.inputs_reset,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.delete(
    "/{batch_id}",
    status_code=202,
    response_model=BatchOut,
    responses=ERRORS,
    summary="Cancel a batch: intake stops and unfinished documents are cancelled",
)
def cancel(
    batch_id: uuid.UUID, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> Response:
    session = uow.session
    _own(session, tenant, batch_id)
    uow.commit()
    cancel_batch(uow, batch_id, store=runtime.store)
    log.info("batch.cancelled", batch_id=str(batch_id))
    body = _present(session, _own(session, tenant, batch_id), public_base_url(request, runtime))
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


@router.get(
    "/{batch_id}/report",
    responses={**ERRORS, 200: {"content": {"application/json": {}, "text/csv": {}}}},
    summary="Reconciliation: every input and how it ended (done, failed with reason, duplicate, …)",
)
def report(
    batch_id: uuid.UUID,
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    batch = _own(session, tenant, batch_id)
    head = summary(batch, batch_status(session, batch.id))
    sessions = runtime.sessions

    def rows() -> Iterator[str]:
        with sessions() as reader:
            yield from (
                csv_chunks(report_rows(reader, batch_id))
                if format == "csv"
                else json_chunks(head, report_rows(reader, batch_id))
            )

    if format == "csv":
        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}-report.csv"'},
        )
    return StreamingResponse(rows(), media_type="application/json")
