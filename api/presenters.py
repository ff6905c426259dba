"""Turning rows into the API's response models."""

from __future__ import annotations

import uuid
from typing import Any

from api.schemas import (
    BatchItemOut,
    BatchLinks,
    BatchOut,
    BatchProgress,
    BlockOut,
    DocumentLinks,
    DocumentOut,
    ErrorDetail,
    FigureOut,
    PageOut,
    PageResultOut,
    TokenTotals,
    WaitingOut,
)
from scriptorium.batches.outcomes import item_outcome
from scriptorium.batches.queries import BatchStatus
from scriptorium.db.models import Batch, BatchItem, Document, Page
from scriptorium.gpu_workers import Waiting
from scriptorium.storage import ObjectStore


def document_links(base_url: str, document: Document, store: ObjectStore) -> DocumentLinks:
    """API links, plus presigned links to the files the assembly task wrote (for bucket readers)."""
    self_url = f"{base_url}/v1/documents/{document.id}"
    name = (document.filename or str(document.id)).rsplit(".", 1)[0]
    return DocumentLinks(
        self=self_url,
        result_markdown=f"{self_url}/result?format=markdown",
        result_json=f"{self_url}/result?format=json",
        markdown_file=store.presigned_get(document.result_markdown_key, filename=f"{name}.md")
        if document.result_markdown_key
        else None,
        json_file=store.presigned_get(document.result_json_key, filename=f"{name}.json")
        if document.result_json_key
        else None,
    )


def _error(code: str | None, message: str | None) -> ErrorDetail | None:
    return ErrorDetail(code=code, message=message or code) if code else None


def present_document(
    document: Document,
    counts: dict[str, int],
    base_url: str,
    store: ObjectStore,
    *,
    waiting: Waiting | None = None,
) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        state=document.state,
        filename=document.filename,
        kind=document.kind,
        size_bytes=document.size_bytes,
        sha256=document.sha256,
        task=document.task,
        priority=document.priority,
        model=document.model,
        duplicate_of=document.duplicate_of,
        routing_policy=document.routing_policy,
        page_selection=document.page_selection,
        metadata=document.client_metadata,
        page_count=document.page_count,
        pages_total=document.pages_total,
        pages=counts,
        tokens=TokenTotals(
            vision=document.vision_tokens,
            valid=document.valid_tokens,
            placeholders=document.placeholder_tokens,
            prompt=document.prompt_tokens,
            output=document.output_tokens,
        ),
        ocr_attempts=document.ocr_attempts,
        escalations=document.escalations,
        engine_seconds=round(document.engine_seconds, 4),
        error=_error(document.error_code, document.error_message),
        waiting=WaitingOut(reason=waiting.reason, model=waiting.model) if waiting else None,
        created_at=document.created_at,
        updated_at=document.updated_at,
        started_at=document.started_at,
        finished_at=document.finished_at,
        links=document_links(base_url, document, store),
    )


def page_tokens(page: Page) -> TokenTotals:
    return TokenTotals(
        vision=page.vision_tokens,
        valid=page.valid_tokens,
        placeholders=page.placeholder_tokens,
        prompt=page.prompt_tokens,
        output=page.output_tokens,
    )


def _blocks(page: Page) -> list[BlockOut]:
    return [BlockOut.model_validate(block) for block in page.blocks or []]


def _figures(page: Page, store: ObjectStore) -> list[FigureOut]:
    figures: list[dict[str, Any]] = page.figures or []
    return [
        FigureOut(name=figure["name"], box=figure["box"], url=store.presigned_get(figure["key"]))
        for figure in figures
    ]


def present_page(page: Page, document: Document, store: ObjectStore) -> PageOut:
    """``document`` is the page's own: for a duplicate's page, the duplicate (same model)."""
    return PageOut(
        document_id=page.document_id,
        page_no=page.page_no,
        state=page.state,
        width=page.width,
        height=page.height,
        dpi=page.dpi,
        planned_mode=page.planned_mode,
        mode=page.mode,
        grid=page.grid,
        routing=page.routing,
        tokens=page_tokens(page),
        compression_ratio=page.compression_ratio,
        finished=page.finished,
        under_read=page.under_read,
        attempts=page.attempts,
        escalations=page.escalations,
        ocr_attempts=page.ocr_attempts or [],
        engine_seconds=round(page.engine_seconds, 4),
        model_revision=page.model_revision,
        model=page.model,
        document_model=document.model,
        markdown=page.markdown,
        blocks=_blocks(page),
        figures=_figures(page, store),
        image_url=store.presigned_get(page.image_key) if page.drawn else None,
        error=_error(page.error_code, page.error_message),
    )


def present_page_result(page: Page, store: ObjectStore) -> PageResultOut:
    return PageResultOut(
        page_no=page.page_no,
        state=page.state,
        mode=page.mode,
        markdown=page.markdown,
        blocks=_blocks(page),
        figures=_figures(page, store),
        tokens=page_tokens(page),
        under_read=page.under_read,
        model=page.model,
        error=_error(page.error_code, page.error_message),
    )


def batch_links(base_url: str, batch_id: uuid.UUID) -> BatchLinks:
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
        error=_error(batch.error_code, batch.error_message),
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        finished_at=batch.finished_at,
        links=batch_links(base_url, batch.id),
    )


def present_batch_item(item: BatchItem, document: Document | None) -> BatchItemOut:
    return BatchItemOut(
        seq=item.seq,
        name=item.name,
        state=item.state,
        outcome=item_outcome(
            item.state,
            document.state if document else None,
            duplicate=bool(document and document.duplicate_of),
        ),
        document_id=item.document_id,
        size_bytes=item.size_bytes,
        sha256=item.sha256,
        error=_error(item.error_code, item.error_message),
        history=item.history,
    )
