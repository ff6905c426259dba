"""Usage and quota: the tenant's bill from the usage ledger, its limits and what they leave."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import SessionDep, TenantDep
from api.schemas import error_responses
from scriptorium.db.models import Document
from scriptorium.model_choice import known_model
from scriptorium.quotas import quota_of
from scriptorium.states import DocumentState
from scriptorium.usage import GroupBy, UsageLine, lines_as_csv, usage_lines, usage_total, usage_window

router = APIRouter(prefix="/v1", tags=["usage"])
ERRORS = error_responses(401, 422, 429)


class UsageLineOut(BaseModel):
    key: str | None = Field(
        description="UTC day (YYYY-MM-DD), mode, model, batch id or document id; null: no batch"
    )
    pages: int = Field(description="distinct pages the engine read in this group")
    engine_runs: int = Field(description="engine runs, escalations included")
    vision_tokens: int
    valid_tokens: int
    prompt_tokens: int
    output_tokens: int
    escalations: int
    engine_seconds: float


class UsageReport(BaseModel):
    start: datetime = Field(description="inclusive")
    end: datetime = Field(description="exclusive")
    group_by: GroupBy
    model: str | None = Field(description="only this model family's usage; null: every model's")
    lines: list[UsageLineOut]
    models: list[UsageLineOut] = Field(description="the window split by model family (key: the family)")
    total: UsageLineOut


class QuotaOut(BaseModel):
    page_budget: int | None = Field(description="pages the engine may read in total; null: unlimited")
    token_budget: int | None = Field(description="vision + output tokens in total; null: unlimited")
    pages_used: int
    tokens_used: int
    pages_left: int | None
    tokens_left: int | None
    max_concurrent_documents: int | None = Field(description="documents preparing or processing at once")
    documents_in_progress: int
    documents_paused: dict[str, int] = Field(description="paused documents by reason")
    rate_limit_per_s: float | None = Field(description="the tenant's own request rate; null: the default")
    rate_limit_burst: int | None


def _out(line: UsageLine) -> UsageLineOut:
    return UsageLineOut.model_validate(line.as_dict())


@router.get(
    "/usage",
    response_model=UsageReport,
    responses={**ERRORS, 200: {"content": {"text/csv": {}}, "model": UsageReport}},
    summary="Pages, tokens, escalations and engine time, grouped by day, mode, model, batch or document",
)
def usage(
    session: SessionDep,
    tenant: TenantDep,
    start: Annotated[
        datetime | None,
        Query(alias="from", description="ISO date or time, inclusive (default: `to` − 30 days)"),
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", description="ISO date or time, exclusive (default: now)")
    ] = None,
    group_by: Annotated[GroupBy, Query()] = GroupBy.DAY,
    model: Annotated[
        str | None,
        Query(max_length=64, description="only this model family's usage (deepseek-ocr, unlimited-ocr)"),
    ] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    start, end = usage_window(start, end)
    family = None if model is None else known_model(model).value  # unserved ones still have usage
    lines = usage_lines(session, tenant.id, start=start, end=end, group_by=group_by, model=family)
    if format == "csv":
        filename = f"usage-{group_by.value}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Response(
            lines_as_csv(lines, group_by),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    report = UsageReport(
        start=start,
        end=end,
        group_by=group_by,
        model=family,
        lines=[_out(line) for line in lines],
        models=[
            _out(line)
            for line in usage_lines(
                session, tenant.id, start=start, end=end, group_by=GroupBy.MODEL, model=family
            )
        ],
        total=_out(usage_total(session, tenant.id, start=start, end=end, model=family)),
    )
    return JSONResponse(report.model_dump(mode="json"))


@router.get(
    "/quota", response_model=QuotaOut, responses=ERRORS, summary="The tenant's limits and what is left"
)
def quota(session: SessionDep, tenant: TenantDep) -> QuotaOut:
    current = quota_of(session, tenant.id)
    paused = dict(
        session.execute(
            select(Document.error_code, func.count())
            .where(Document.tenant_id == tenant.id, Document.state == DocumentState.PAUSED)
            .group_by(Document.error_code)
        ).all()
    )
    in_progress = session.execute(
        select(func.count()).where(
            Document.tenant_id == tenant.id,
            Document.state.in_((DocumentState.PREPARING, DocumentState.PROCESSING)),
        )
    ).scalar_one()
    return QuotaOut(
        page_budget=current.page_budget,
        token_budget=current.token_budget,
        pages_used=current.pages_used,
        tokens_used=current.tokens_used,
        pages_left=None if current.page_budget is None else max(0, current.page_budget - current.pages_used),
        tokens_left=None
        if current.token_budget is None
        else max(0, current.token_budget - current.tokens_used),
        max_concurrent_documents=current.max_concurrent_documents,
        documents_in_progress=in_progress,
        documents_paused={str(reason): count for reason, count in paused.items()},
        rate_limit_per_s=current.rate_limit_per_s,
        rate_limit_burst=current.rate_limit_burst,
    )
