"""Response models: the API's published contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: each status answers with the common error body."""
    return {status: {"model": ErrorResponse} for status in statuses}


class TokenTotals(BaseModel):
    vision: int = Field(description="encoder features fed to the decoder (the paper's vision tokens)")
    valid: int = Field(description="vision tokens that do not cover padding (paper Eq. 1)")
    placeholders: int = Field(description="<image> placeholder ids in prompts")
    prompt: int
    output: int


class DocumentLinks(BaseModel):
    self: str
    result_markdown: str
    result_json: str
    markdown_file: str | None = Field(
        default=None,
        description="presigned link to the assembled document.md in object storage, once written",
    )
    json_file: str | None = Field(
        default=None,
        description="presigned link to the assembled document.json in object storage, once written",
    )


class WaitingOut(BaseModel):
    reason: Literal["no_worker_for_model"] = Field(
        description="no_worker_for_model: no live GPU worker serves the document's model family"
    )
    model: str = Field(description="the model family the document's pages wait for")


class DocumentOut(BaseModel):
    id: uuid.UUID
    state: str
    filename: str | None
    kind: str | None
    size_bytes: int
    sha256: str
    task: str
    priority: str = Field(description="interactive or bulk lane")
    model: str = Field(description="the model family that reads it: deepseek-ocr or unlimited-ocr")
    duplicate_of: uuid.UUID | None = Field(description="the earlier document whose result this one reuses")
    routing_policy: dict[str, Any]
    page_selection: str | None
    metadata: dict[str, Any]
    page_count: int | None = Field(description="pages in the file")
    pages_total: int = Field(description="pages selected for OCR")
    pages: dict[str, int] = Field(description="selected pages by state")
    tokens: TokenTotals
    ocr_attempts: int
    escalations: int
    engine_seconds: float
    error: ErrorDetail | None
    waiting: WaitingOut | None = Field(
        default=None,
        description="why a processing document's queued pages are not being read; null when nothing "
        "holds them up (they are read as soon as a worker of their model family is live again)",
    )
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: DocumentLinks


class DocumentList(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None


class FigureOut(BaseModel):
    name: str
    box: list[int]
    url: str


class BlockOut(BaseModel):
    label: str
    boxes: list[list[int]]
    text: str


class PageOut(BaseModel):
    document_id: uuid.UUID
    page_no: int
    state: str
    width: int
    height: int
    dpi: int | None
    planned_mode: str | None
    mode: str | None
    grid: list[int] | None
    routing: dict[str, Any] = Field(description="page facts, predicted text tokens, chosen mode and reason")
    tokens: TokenTotals
    compression_ratio: float | None
    finished: bool | None
    under_read: bool
    attempts: int
    escalations: int
    ocr_attempts: list[dict[str, Any]]
    engine_seconds: float
    model_revision: str | None
    model: str | None = Field(
        default=None, description="the model family that read the page: deepseek-ocr or unlimited-ocr"
    )
    document_model: str = Field(description="the model family the page's document chose")
    markdown: str | None
    blocks: list[BlockOut]
    figures: list[FigureOut]
    image_url: str | None = Field(
        description="a time-limited link to the page as rendered; null for a page that could not be drawn"
    )
    error: ErrorDetail | None


class PageResultOut(BaseModel):
    page_no: int
    state: str
    mode: str | None
    markdown: str | None
    blocks: list[BlockOut]
    figures: list[FigureOut]
    tokens: TokenTotals
    under_read: bool
    model: str | None = Field(default=None, description="the model family that read the page")
    error: ErrorDetail | None


class DocumentResult(BaseModel):
    document: DocumentOut
    pages: list[PageResultOut]
    failed_pages: list[int]


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
