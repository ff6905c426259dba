"""Documents: upload, status, listing, results, pages and cancellation."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Header, Path, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, SessionDep, TenantDep, UnitOfWorkDep, public_base_url
from api.errors import ApiError
from api.forms import accepted, document_options
from api.pagination import decode_cursor, encode_cursor
from api.presenters import present_document, present_page, present_page_result
from api.routes.webhooks import document_webhook_url
from api.runtime import ApiRuntime
from api.schemas import DocumentList, DocumentOut, DocumentResult, PageOut, error_responses
from scriptorium.acceptance import Dedup, intake_stream
from scriptorium.db.models import Document, Page, Tenant
from scriptorium.errors import Conflict, NotFound, ReasonCode
from scriptorium.gpu_workers import waiting_documents
from scriptorium.idempotency import find_by_key
from scriptorium.lifecycle.documents import cancel_document, lock_document, page_state_counts
from scriptorium.logging import bind_context, get_logger
from scriptorium.page_ranges import MAX_PAGE_NUMBER
from scriptorium.results import assemble_markdown, failed_pages
from scriptorium.states import DocumentState, Lane

router = APIRouter(prefix="/v1/documents", tags=["documents"])
log = get_logger(__name__)

ERRORS = error_responses(401, 404, 409, 413, 422, 429, 503)


def _own_document(session: Session, tenant: Tenant, document_id: uuid.UUID) -> Document:
    document = session.execute(
        select(Document).where(Document.id == document_id, Document.tenant_id == tenant.id)
    ).scalar_one_or_none()
    if document is None:
        raise NotFound(f"no document {document_id}")
    return document


def _pages_source(session: Session, document: Document) -> Document:
    """Whose pages a document shows: a completed duplicate shows its original's."""
    if document.duplicate_of is None or document.state != DocumentState.COMPLETED:
        return document
    original = session.get(Document, document.duplicate_of)
    return original if original is not None else document


def _present(session: Session, document: Document, base_url: str, runtime: ApiRuntime) -> DocumentOut:
    source = _pages_source(session, document)
    waiting = None
    if document.state == DocumentState.PROCESSING:
        gone_after_s = runtime.settings.limits.gpu_worker_gone_after_s
        waiting = waiting_documents(session, [document.id], gone_after_s=gone_after_s).get(document.id)
    counts = page_state_counts(session, source.id)
    body = present_document(document, counts, base_url, runtime.store, waiting=waiting)
    return body.model_copy(update={"pages_total": source.pages_total}) if source is not document else body


@router.post(
    "",
    status_code=202,
    response_model=DocumentOut,
    responses=ERRORS,
    summary="Upload a document for OCR",
)
def upload_document(
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    tenant: TenantDep,
    file: Annotated[UploadFile, File(description="the document: PDF, PNG, JPEG, TIFF or WebP")],
    pages: Annotated[str | None, Form(description="pages to read, e.g. 1-3,5 (default: all)")] = None,
    mode: Annotated[str, Form(description="auto, or a fixed mode: tiny, small, base, large, gundam")] = "",
    task: Annotated[Literal["markdown", "free_ocr", "figure"], Form()] = "markdown",
    policy: Annotated[
        str | None, Form(description='routing policy JSON, e.g. {"target_ratio": 8, "max_mode": "large"}')
    ] = None,
    metadata: Annotated[str | None, Form(description="a JSON object stored with the document")] = None,
    password: Annotated[str | None, Form(description="password of an encrypted PDF")] = None,
    webhook_url: Annotated[
        str | None, Form(description="also POST the outcome here, signed with the tenant's signing secret")
    ] = None,
    priority: Annotated[
        Lane, Form(description="interactive (default) is served before every bulk page")
    ] = Lane.INTERACTIVE,
    dedup: Annotated[
        bool,
        Form(
            description="reuse the result of an earlier upload of the same bytes and options (default true)"
        ),
    ] = True,
    model: Annotated[
        str | None,
        Form(
            max_length=64,
            description="the model family that reads it: deepseek-ocr or unlimited-ocr "
            "(default: the tenant's default, then the fleet's); it must be one this fleet serves",
        ),
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    settings = runtime.settings
    session = uow.session
    base_url = public_base_url(request, runtime)
    existing = find_by_key(session, Document, tenant.id, idempotency_key)
    if existing is not None:
        return accepted(
            _present(session, existing, base_url, runtime), settings.api.retry_after_s, replay=True
        )
    checked_webhook_url = (
        document_webhook_url(session, tenant.id, webhook_url, settings) if webhook_url else None
    )
    _, spec = document_options(
        tenant,
        task=task,
        mode=mode,
        policy=policy,
        pages=pages,
        metadata=metadata,
        priority=priority,
        dedup=dedup,
        default_priority=Lane.INTERACTIVE,
        models=settings.models,
        model=model,
        password=password,
        webhook_url=checked_webhook_url,
    )
    declared = request.headers.get("content-length")
    limit = settings.limits.max_upload_bytes
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise ApiError(413, ReasonCode.TOO_LARGE, f"uploads are limited to {limit} bytes")

    document_id = uuid.uuid4()
    bind_context(document_id=str(document_id))
    intake = intake_stream(
        uow,
        runtime.store,
        file.file,
        limit=limit,
        tenant_id=tenant.id,
        spec=spec,
        filename=file.filename,
        dedup=Dedup.from_settings(settings, enabled=dedup),
        document_id=document_id,
        idempotency_key=idempotency_key,
        request_id=request.state.request_id,
    )
    uow.commit()
    document = intake.document
    if intake.replayed:
        return accepted(
            _present(session, document, base_url, runtime), settings.api.retry_after_s, replay=True
        )
    log.info(
        "document.received",
        size=document.size_bytes,
        sha256=document.sha256,
        task=task,
        model=document.model,
        priority=document.priority,
        duplicate_of=document.duplicate_of and str(document.duplicate_of),
    )
    return accepted(_present(session, document, base_url, runtime), settings.api.retry_after_s)


@router.get("", response_model=DocumentList, responses=ERRORS, summary="List documents, newest first")
def list_documents(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
    state: Annotated[DocumentState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query()] = None,
    batch_id: Annotated[uuid.UUID | None, Query(description="only documents of this batch")] = None,
    filename: Annotated[
        str | None, Query(max_length=200, description="only file names containing this (case-insensitive)")
    ] = None,
) -> DocumentList:
    query = select(Document).where(Document.tenant_id == tenant.id)
    if state is not None:
        query = query.where(Document.state == state.value)
    if batch_id is not None:
        query = query.where(Document.batch_id == batch_id)
    if filename:
        escaped = filename.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Document.filename.ilike(f"%{escaped}%", escape="\\"))
    if cursor:
        created, ident = decode_cursor(cursor)
        query = query.where(
            or_(Document.created_at < created, and_(Document.created_at == created, Document.id < ident))
        )
    rows = list(
        session.execute(
            query.order_by(Document.created_at.desc(), Document.id.desc()).limit(limit + 1)
        ).scalars()
    )
    base_url = public_base_url(request, runtime)
    items = [_present(session, d, base_url, runtime) for d in rows[:limit]]
    return DocumentList(
        items=items, next_cursor=encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    )


@router.get("/{document_id}", response_model=DocumentOut, responses=ERRORS, summary="A document's status")
def get_document(
    document_id: uuid.UUID, request: Request, runtime: RuntimeDep, session: SessionDep, tenant: TenantDep
) -> DocumentOut:
    document = _own_document(session, tenant, document_id)
    return _present(session, document, public_base_url(request, runtime), runtime)


@router.get(
    "/{document_id}/result",
    response_model=DocumentResult,
    responses={**ERRORS, 200: {"content": {"text/markdown": {}}, "model": DocumentResult}},
    summary="The document's result once it is terminal",
)
def get_result(
    document_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
    format: Annotated[Literal["markdown", "json"], Query()] = "json",
) -> Response:
    document = _own_document(session, tenant, document_id)
    if not document.state.is_terminal:
        raise ApiError(
            409,
            "not_ready",
            f"the document is {document.state}; results exist once it is terminal",
            headers={"Retry-After": str(runtime.settings.api.retry_after_s)},
        )
    source = _pages_source(session, document)
    pages = list(session.execute(select(Page).where(Page.document_id == source.id)).scalars())
    failed = failed_pages(pages)
    if format == "markdown":
        headers = {"X-Failed-Pages": ",".join(map(str, failed))} if failed else {}
        return PlainTextResponse(assemble_markdown(pages), media_type="text/markdown", headers=headers)
    base_url = public_base_url(request, runtime)
    result = DocumentResult(
        document=_present(session, document, base_url, runtime),
        pages=[present_page_result(page, runtime.store) for page in sorted(pages, key=lambda p: p.page_no)],
        failed_pages=failed,
    )
    return JSONResponse(result.model_dump(mode="json"))


@router.get(
    "/{document_id}/pages/{page_no}",
    response_model=PageOut,
    responses=ERRORS,
    summary="One page: result, image link, routing decision and tokens",
)
def get_page(
    document_id: uuid.UUID,
    page_no: Annotated[int, Path(ge=1, le=MAX_PAGE_NUMBER)],
    runtime: RuntimeDep,
    session: SessionDep,
    tenant: TenantDep,
) -> PageOut:
    document = _own_document(session, tenant, document_id)
    page = session.get(Page, (_pages_source(session, document).id, page_no))
    if page is None:
        raise NotFound(f"document {document_id} has no selected page {page_no}")
    return present_page(page, document, runtime.store).model_copy(update={"document_id": document.id})


@router.delete(
    "/{document_id}",
    status_code=202,
    response_model=DocumentOut,
    responses=ERRORS,
    summary="Cancel a document: pages not yet read never reach a GPU",
)
def cancel(
    document_id: uuid.UUID, request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep, tenant: TenantDep
) -> Response:
    session = uow.session
    document = _own_document(session, tenant, document_id)
    locked = lock_document(session, document.id)
    assert locked is not None
    if locked.state.is_terminal:
        raise Conflict("already_terminal", f"the document is already {locked.state}")
    cancel_document(uow, locked)
    uow.commit()
    log.info("document.cancelled")
    body = _present(session, locked, public_base_url(request, runtime), runtime)
    return JSONResponse(body.model_dump(mode="json"), status_code=202)
