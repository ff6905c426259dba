"""Turning rows into the API's response models."""

from __future__ import annotations

from typing import Any

from api.schemas import (
    BlockOut,
    DocumentLinks,
    DocumentOut,
    ErrorDetail,
    FigureOut,
    PageOut,
    PageResultOut,
    TokenTotals,
)
from scriptorium.db.models import Document, Page
from scriptorium.storage import ObjectStore


def document_links(base_url: str, document: Document) -> DocumentLinks:
    self_url = f"{base_url}/v1/documents/{document.id}"
    return DocumentLinks(
        self=self_url,
        result_markdown=f"{self_url}/result?format=markdown",
        result_json=f"{self_url}/result?format=json",
    )


def _error(code: str | None, message: str | None) -> ErrorDetail | None:
    return ErrorDetail(code=code, message=message or code) if code else None


def present_document(document: Document, counts: dict[str, int], base_url: str) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        state=document.state,
        filename=document.filename,
        kind=document.kind,
        size_bytes=document.size_bytes,
        sha256=document.sha256,
        task=document.task,
        priority=document.priority,
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
        created_at=document.created_at,
        updated_at=document.updated_at,
        started_at=document.started_at,
        finished_at=document.finished_at,
        links=document_links(base_url, document),
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


def present_page(page: Page, store: ObjectStore) -> PageOut:
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
        markdown=page.markdown,
        blocks=_blocks(page),
        figures=_figures(page, store),
        image_url=store.presigned_get(page.image_key),
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
        error=_error(page.error_code, page.error_message),
    )
