"""Batches: many inputs as one unit — from an archive, a bucket prefix, a manifest or client uploads."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, SessionDep, TenantDep, public_base_url
from api.errors import ApiError, options_errors, storage_errors
from api.pagination import decode_cursor, encode_cursor
from api.presenters import present_document
from api.routes.webhooks import document_webhook_url
from api.runtime import ApiRuntime
from api.schemas import DocumentList, DocumentOut, ErrorDetail, TokenTotals, error_responses
from scriptorium.acceptance import (
    Dedup,
    DocumentOptions,
    intake_stream,
    parse_json_object,
    resolve_spec,
)
from scriptorium.batches.archives import archive_format
from scriptorium.batches.completion import lock_batch
from scriptorium.batches.control import (
    BatchConflict,
    NewBatch,
    batch_object_key,
    cancel_batch,
    close_batch,
    create_batch,
    own_batch,
    retry_failed,
)
from scriptorium.batches.outcomes import item_outcome
from scriptorium.batches.queries import BatchStatus, batch_status, current_documents, list_items
from scriptorium.batches.report import csv_chunks, json_chunks, report_rows, summary
from scriptorium.batches.states import BatchKind, BatchState, IntakeReason, IntakeRefused, ItemState
from scriptorium.db.models import Batch, BatchItem, Document, Tenant
from scriptorium.errors import ReasonCode
from scriptorium.idempotency import REPLAYED_HEADER, find_by_key
from scriptorium.lifecycle import page_state_counts
from scriptorium.logging import bind_context, get_logger
from scriptorium.sources import SourceRegistry, parse_s3_uri
from scriptorium.states import Lane
from scriptorium.storage import StorageUnavailable, StoredObject, UploadTooLarge, raw_key

router = APIRouter(prefix="/v1/batches", tags=["batches"])
log = get_logger(__name__)

ERRORS = error_responses(401, 404, 409, 413, 422, 429, 503)
ARCHIVE_SNIFF_BYTES = 512


class BatchLinks(BaseModel):
    self: str
    documents: str
    items: str
    report_json: str
    report_csv: str


class BatchProgress(BaseModel):
    inputs: int = Field(description="inputs discovered so far")
    finished: int = Field(description="inputs whose outcome is final")
    fraction: float = Field(description="finished ÷ inputs (0 while none is known)")
    inputs_complete: bool = Field(description="every input has been discovered")


class BatchOut(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    state: str
    round: int = Field(description="1, plus one per retry-failed; batch events carry it")
    source: dict[str, Any] = Field(description="where inputs come from (a source is named, never its keys)")
    options: dict[str, Any] = Field(description="defaults of every document the batch makes")
    inputs: dict[str, int] = Field(description="inputs by intake state")
    documents: dict[str, int] = Field(description="current documents (latest attempt of each input) by state")
    outcomes: dict[str, int] = Field(description="inputs by outcome, as in the reconciliation report")
    progress: BatchProgress
    tokens: TokenTotals = Field(description="every document of the batch, retries included")
    pages_total: int
    ocr_attempts: int
    escalations: int
    engine_seconds: float
    error: ErrorDetail | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    links: BatchLinks


class BatchList(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None


class BatchItemOut(BaseModel):
    seq: int
    name: str = Field(description="archive path, object key or manifest URI")
    state: str
    outcome: str
    document_id: uuid.UUID | None
    size_bytes: int | None
    sha256: str | None
    error: ErrorDetail | None
    history: list[dict[str, Any]] = Field(description="earlier documents of this input, oldest first")


class BatchItemList(BaseModel):
    items: list[BatchItemOut]
    next_cursor: str | None


class RetryOut(BaseModel):
    batch: BatchOut
    retried_documents: int = Field(description="new documents made for failed ones")
    inputs_reset: int = Field(description="inputs whose source was unavailable, to be fetched again")


def _links(base_url: str, batch_id: uuid.UUID) -> BatchLinks:
    root = f"{base_url}/v1/batches/{batch_id}"
    return BatchLinks(
        self=root,
        documents=f"{root}/documents",
        items=f"{root}/items",
        report_json=f"{root}/report?format=json",
        report_csv=f"{root}/report?format=csv",
    )


def present_batch(batch: Batch, status: BatchStatus, base_url: str) -> BatchOut:
    finished = status.finished_inputs
    tokens = status.tokens
    return BatchOut(
        id=batch.id,
        name=batch.name,
        kind=batch.kind,
        state=batch.state,
        round=batch.round,
        source=batch.source,
        options=batch.options,
        inputs=status.items,
        documents=status.documents,
        outcomes=status.outcomes,
        progress=BatchProgress(
            inputs=status.inputs,
            finished=finished,
            fraction=round(finished / status.inputs, 4) if status.inputs else 0.0,
            inputs_complete=batch.inputs_complete,
        ),
        tokens=TokenTotals(**tokens),
        pages_total=status.pages_total,
        ocr_attempts=status.ocr_attempts,
        escalations=status.escalations,
        engine_seconds=round(status.engine_seconds, 4),
        error=ErrorDetail(code=batch.error_code, message=batch.error_message or batch.error_code)
        if batch.error_code
        else None,
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        finished_at=batch.finished_at,
        links=_links(base_url, batch.id),
    )


def _present(session: Session, batch: Batch, base_url: str) -> BatchOut:
    return present_batch(batch, batch_status(session, batch.id), base_url)


def _own(session: Session, tenant: Tenant, batch_id: uuid.UUID) -> Batch:
    batch = own_batch(session, tenant.id, batch_id)
    if batch is None:
        raise ApiError(404, "not_found", f"no batch {batch_id}")
    return batch


def _accepted(body: BatchOut, retry_after: int, *, replay: bool = False) -> JSONResponse:
    headers = {"Location": body.links.self, "Retry-After": str(retry_after)}
    if replay:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


def _options(
    tenant: Tenant,
    *,
    task: str | None,
    mode: str | None,
    policy: str | None,
    pages: str | None,
    metadata: str | None,
    priority: Lane,
    dedup: bool,
) -> DocumentOptions:
    """The batch's document defaults, checked now so a bad option fails the request, not each input."""
    with options_errors():
        options = DocumentOptions.parse(
            {
                "task": task,
                "mode": mode or None,
                "policy": parse_json_object(policy, code="invalid_policy", what="policy"),
                "pages": pages or None,
                "metadata": parse_json_object(metadata, code="invalid_metadata", what="metadata"),
                "priority": priority,
                "dedup": dedup,
            }
        )
        resolve_spec(options, tenant_policy=tenant.routing_policy, default_priority=Lane.BULK)
    return options


def _store_upload(runtime: ApiRuntime, upload: UploadFile, key: str, *, limit: int) -> StoredObject:
    with storage_errors("this upload"):
        return runtime.store.put_stream(key, upload.file, limit=limit)


def _refused(refused: IntakeRefused) -> ApiError:
    return ApiError(422, refused.reason.value, refused.message)


def _archive_source(
    runtime: ApiRuntime, tenant: Tenant, batch_id: uuid.UUID, archive: UploadFile
) -> dict[str, Any]:
    head = archive.file.read(ARCHIVE_SNIFF_BYTES)
    archive.file.seek(0)
    if archive_format(head) is None:
        raise ApiError(
            422, IntakeReason.ARCHIVE_UNSUPPORTED.value, "the archive must be a zip or a tar (.gz, .bz2, .xz)"
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
    try:
        ref = parse_s3_uri(prefix, require_key=False)
        SourceRegistry(runtime.settings.sources).check(ref.source, tenant_name=tenant.name, bucket=ref.bucket)
    except IntakeRefused as refused:
        raise _refused(refused) from refused
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
    session: SessionDep,
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
    webhook_url: Annotated[
        str | None, Form(description="POST batch events here, signed with the tenant's signing secret")
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    """With none of ``archive``, ``manifest`` and ``prefix`` the batch is *open*: upload files into it
    (``POST /v1/batches/{id}/documents``), then close it."""
    settings = runtime.settings
    base_url = public_base_url(request, runtime)
    if existing := find_by_key(session, Batch, tenant.id, idempotency_key):
        return _accepted(_present(session, existing, base_url), settings.api.retry_after_s, replay=True)
    given = [
        kind for kind, value in (("archive", archive), ("manifest", manifest), ("prefix", prefix)) if value
    ]
    if len(given) > 1:
        raise ApiError(
            422, "invalid_request", f"give one of archive, manifest and prefix, not {' and '.join(given)}"
        )
    options = _options(
        tenant,
        task=task,
        mode=mode,
        policy=policy,
        pages=pages,
        metadata=metadata,
        priority=priority,
        dedup=dedup,
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
        session,
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
    if replayed and "key" in source:
        runtime.store.delete(str(source["key"]))
    if not replayed and batch.state == BatchState.EXPANDING.value:
        runtime.publisher.send_expand_batch(batch.id, priority)
    log.info("batch.created", kind=kind.value, replayed=replayed)
    return _accepted(_present(session, batch, base_url), settings.api.retry_after_s, replay=replayed)


def _decode_seq(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued")
    return int(cursor)


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
    session: SessionDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="the document")],
    name: Annotated[str | None, Form(description="what the report calls it (default: the file name)")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    settings = runtime.settings
    base_url = public_base_url(request, runtime)
    batch = _own(session, tenant, batch_id)
    if batch.state != BatchState.OPEN.value:
        raise ApiError(409, "batch_not_open", f"the batch is {batch.state}; files go into an open batch only")
    options = DocumentOptions.parse(batch.options)
    with options_errors():
        spec = resolve_spec(options, tenant_policy=tenant.routing_policy, default_priority=Lane.BULK)
    label = (name or file.filename or "upload")[:1024]

    def add_item(inner: Session, document: Document) -> None:
        locked = lock_batch(inner, batch_id)
        assert locked is not None
        if locked.state != BatchState.OPEN.value:
            raise BatchConflict(
                "batch_not_open", f"the batch is {locked.state}; files go into an open batch only"
            )
        locked.inputs_total += 1
        inner.add(
            BatchItem(
                batch_id=batch_id,
                seq=locked.inputs_total,
                name=label,
                origin={"upload": True},
                state=ItemState.INGESTED.value,
                size_bytes=document.size_bytes,
                sha256=document.sha256,
                document_id=document.id,
                history=[],
                fetch_attempts=0,
            )
        )
        inner.flush()

    document_id = uuid.uuid4()
    bind_context(document_id=str(document_id), batch_id=str(batch_id))
    try:
        accepted = intake_stream(
            session,
            runtime.store,
            runtime.publisher,
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
            before_commit=add_item,
        )
    except UploadTooLarge as error:
        raise ApiError(
            413, ReasonCode.TOO_LARGE.value, f"uploads are limited to {error.limit} bytes"
        ) from error
    except StorageUnavailable as error:
        raise ApiError(
            503,
            ReasonCode.STORAGE.value,
            "object storage is unavailable; retry later",
            headers={"Retry-After": "10"},
        ) from error
    except BatchConflict as conflict:
        session.rollback()
        runtime.store.delete(raw_key(tenant.id, document_id))
        raise ApiError(409, conflict.code, conflict.message) from conflict
    document = accepted.document
    body = present_document(document, page_state_counts(session, document.id), base_url)
    headers = {"Location": body.links.self, "Retry-After": str(settings.api.retry_after_s)}
    if accepted.replayed:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


@router.post(
    "/{batch_id}/close",
    response_model=BatchOut,
    responses=ERRORS,
    summary="Close an open batch: no more files; it completes when its documents have",
)
def close(
    batch_id: uuid.UUID, request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep
) -> BatchOut:
    _own(session, tenant, batch_id)
    try:
        close_batch(session, batch_id)
    except BatchConflict as conflict:
        session.rollback()
        raise ApiError(409, conflict.code, conflict.message) from conflict
    session.commit()
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
        items=[present_document(d, page_state_counts(session, d.id), base_url) for _, d in rows[:limit]],
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
        state=state.value if state else None,
    )
    out = [
        BatchItemOut(
            seq=item.seq,
            name=item.name,
            state=item.state,
            outcome=item_outcome(
                item.state,
                document.state if document else None,
                duplicate=bool(document and document.duplicate_of),
            ).value,
            document_id=item.document_id,
            size_bytes=item.size_bytes,
            sha256=item.sha256,
            error=ErrorDetail(code=item.error_code, message=item.error_message or item.error_code)
            if item.error_code
            else None,
            history=item.history,
        )
        for item, document in rows[:limit]
    ]
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
    session: SessionDep,
    tenant: TenantDep,
    include_partial: Annotated[
        bool, Query(description="also retry documents with some failed pages")
    ] = False,
) -> Response:
    batch = _own(session, tenant, batch_id)
    try:
        retried = retry_failed(session, batch.id, include_partial=include_partial)
    except BatchConflict as conflict:
        session.rollback()
        raise ApiError(409, conflict.code, conflict.message) from conflict
    session.commit()
    for document in retried.documents:
        runtime.publisher.send_prepare(document.id, document.request_id, Lane(document.priority))
    if retried.needs_intake:
        runtime.publisher.send_expand_batch(batch.id)
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
    batch_id: uuid.UUID, request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep
) -> Response:
    _own(session, tenant, batch_id)
    session.commit()
    try:
        cancel_batch(runtime.sessions, batch_id)
    except BatchConflict as conflict:
        raise ApiError(409, conflict.code, conflict.message) from conflict
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
