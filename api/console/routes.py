"""The console's pages. Every read and write goes through the API's own handlers and queries,
called with the signed-in tenant, so the console sees exactly what the API would show that tenant."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.console import auth
from api.console.auth import ConsoleSession, ConsoleSessionDep, CsrfRejected, NotSignedIn
from api.console.views import SECURITY_HEADERS, bar_chart, render
from api.deps import RuntimeDep, SessionDep, UnitOfWorkDep
from api.errors import ApiError
from api.presenters import present_page_result
from api.routes import batches as batch_routes
from api.routes import documents as document_routes
from api.routes import usage as usage_routes
from api.routes import webhooks as webhook_routes
from api.runtime import ApiRuntime
from api.schemas import PageResultOut
from scriptorium.activity import tenant_activity
from scriptorium.api_keys import KeyRefused
from scriptorium.batches.report import report_rows
from scriptorium.batches.states import BatchState
from scriptorium.db.models import Document, Page, Tenant
from scriptorium.errors import DomainError
from scriptorium.states import DocumentState, Lane, PageState
from scriptorium.usage import GroupBy, usage_lines, usage_total
from scriptorium.webhooks.states import DeliveryState

PAGE_SIZE = 25
REPORT_ROWS_SHOWN = 500
USAGE_DAYS = 30
LIVE_POLL_MS = 2000
# Shown for a page the renderer could not draw (it has no image; its error says why).
UNDRAWN_PAGE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="210" height="297" viewBox="0 0 210 297">'
    '<rect width="210" height="297" fill="#f4f4f4" stroke="#999"/>'
    '<text x="105" y="150" font-family="sans-serif" font-size="16" text-anchor="middle" fill="#666">'
    "not drawn</text></svg>"
)


class ConsoleRoute(APIRoute):
    """Answers API errors, missing sessions and CSRF failures with HTML, and sets security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except NotSignedIn:
                return RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)
            except CsrfRejected:
                return _problem(
                    request, 403, "forbidden", "the form expired or came from another site; reload it"
                )
            except DomainError as error:
                return _problem(request, error.status, error.code, error.message)
            except RequestValidationError as error:
                fields = ", ".join(str(e.get("loc", ("?",))[-1]) for e in error.errors())
                return _problem(request, 422, "invalid_request", f"check these fields: {fields}")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _problem(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    title = "Not found" if status == 404 else "Something is wrong"
    return render(request, "problem.html", {"title": title, "code": code, "message": message}, status=status)


def _signed_in(console: ConsoleSession) -> dict[str, Any]:
    return {"console": console, "csrf": console.csrf_token, "poll_ms": LIVE_POLL_MS}


def _json(response: Response) -> Any:
    return json.loads(bytes(response.body))


def _back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# --- sign-in ---------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, runtime: RuntimeDep) -> Response:
    token = auth.login_token(request, runtime.settings)
    response = render(request, "login.html", {"title": "Sign in", "login_csrf": token, "refused": None})
    auth.remember_login_token(response, request, runtime.settings, token)
    return response


@router.post("/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    api_key: Annotated[str, Form(max_length=200)],
    csrf_token: Annotated[str, Form(max_length=200)],
) -> Response:
    auth.check_login_csrf(request, runtime.settings, csrf_token)
    try:
        key = auth.sign_in(uow.session, api_key)
    except KeyRefused as refused:
        context = {"title": "Sign in", "login_csrf": csrf_token, "refused": refused.message}
        return render(request, "login.html", context, status=401)
    uow.commit()  # the key's last use
    redirect = _back("/console")
    auth.start_session(redirect, request, runtime.settings, key.tenant, key.prefix)
    return redirect


@router.post("/logout")
def logout(
    request: Request, console: ConsoleSessionDep, csrf_token: Annotated[str | None, Form()] = None
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    response = _back("/console/login")
    auth.end_session(response)
    return response


# --- overview --------------------------------------------------------------------------------


@router.get("")
def overview(
    request: Request, runtime: RuntimeDep, session: SessionDep, console: ConsoleSessionDep
) -> Response:
    tenant = console.tenant
    activity = tenant_activity(session, tenant.id)
    quota = usage_routes.quota(session=session, tenant=tenant)
    recent = document_routes.list_documents(
        request=request, runtime=runtime, session=session, tenant=tenant, limit=8
    )
    batch_list = batch_routes.list_batches(
        request=request, runtime=runtime, session=session, tenant=tenant, limit=5
    )
    in_flight = bool(activity.documents_in_flight or activity.pages_in_flight)
    return render(
        request,
        "overview.html",
        {
            **_signed_in(console),
            "title": "Overview",
            "nav": "overview",
            "activity": activity,
            "quota": quota,
            "documents": recent.items,
            "batches": batch_list.items,
            "live": in_flight,
        },
    )


# --- documents -------------------------------------------------------------------------------


@router.get("/documents")
def documents(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
    state: Annotated[DocumentState | None, Query()] = None,
    batch: Annotated[uuid.UUID | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    listing = document_routes.list_documents(
        request=request,
        runtime=runtime,
        session=session,
        tenant=console.tenant,
        state=state,
        limit=PAGE_SIZE,
        cursor=cursor or None,
        batch_id=batch,
        filename=q or None,
    )
    live = any(not DocumentState(item.state).is_terminal for item in listing.items)
    return render(
        request,
        "documents.html",
        {
            **_signed_in(console),
            "title": "Documents",
            "nav": "documents",
            "documents": listing.items,
            "next_cursor": listing.next_cursor,
            "filters": {"state": state.value if state else "", "batch": str(batch or ""), "q": q or ""},
            "states": [s.value for s in DocumentState],
            "models": [family.value for family in runtime.settings.models.served],
            "live": live,
        },
    )


@router.post("/documents")
def upload(
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    console: ConsoleSessionDep,
    file: Annotated[UploadFile, File()],
    csrf_token: Annotated[str | None, Form()] = None,
    pages: Annotated[str | None, Form(max_length=200)] = None,
    mode: Annotated[str, Form(max_length=16)] = "",
    priority: Annotated[Lane, Form()] = Lane.INTERACTIVE,
    model: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    accepted = document_routes.upload_document(
        request=request,
        runtime=runtime,
        uow=uow,
        tenant=console.tenant,
        file=file,
        pages=pages or None,
        mode=mode,
        task="markdown",
        policy=None,
        metadata=None,
        password=None,
        webhook_url=None,
        priority=priority,
        dedup=True,
        model=model or None,
        idempotency_key=None,
    )
    return _back(f"/console/documents/{_json(accepted)['id']}")


def _pages_of(session: Session, tenant: Tenant, document_id: uuid.UUID) -> Document:
    """The document whose pages ``document_id`` shows (its original, for a duplicate); 404 unless the
    tenant owns it. The API's own lookups."""
    return document_routes._pages_source(session, document_routes._own_document(session, tenant, document_id))


def _own_page(session: Session, tenant: Tenant, document_id: uuid.UUID, page_no: int) -> Page:
    page = session.get(Page, (_pages_of(session, tenant, document_id).id, page_no))
    if page is None:
        raise ApiError(404, "not_found", f"document {document_id} has no selected page {page_no}")
    return page


def _page_rows(
    session: Session, runtime: ApiRuntime, tenant: Tenant, document_id: uuid.UUID
) -> list[PageResultOut]:
    source = _pages_of(session, tenant, document_id)
    pages = session.execute(
        select(Page).where(Page.document_id == source.id).order_by(Page.page_no)
    ).scalars()
    return [present_page_result(page, runtime.store) for page in pages]


@router.get("/documents/{document_id}")
def document(
    document_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    body = document_routes.get_document(
        document_id=document_id, request=request, runtime=runtime, session=session, tenant=console.tenant
    )
    pages = _page_rows(session, runtime, console.tenant, document_id)
    terminal = DocumentState(body.state).is_terminal
    return render(
        request,
        "document.html",
        {
            **_signed_in(console),
            "title": body.filename or str(body.id),
            "nav": "documents",
            "document": body,
            "pages": pages,
            "failed": [page for page in pages if page.error is not None],
            "terminal": terminal,
            "live": not terminal,
        },
    )


@router.post("/documents/{document_id}/cancel")
def cancel_document(
    document_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    console: ConsoleSessionDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    answer = document_routes.cancel(
        document_id=document_id, request=request, runtime=runtime, uow=uow, tenant=console.tenant
    )
    if answer.status_code >= 400:
        error = _json(answer)["error"]
        raise ApiError(answer.status_code, error["code"], error["message"])
    return _back(f"/console/documents/{document_id}")


@router.get("/documents/{document_id}/result.{extension}")
def result(
    document_id: uuid.UUID,
    extension: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    formats = {"md": "markdown", "json": "json"}
    if extension not in formats:
        raise ApiError(404, "not_found", "results are .md or .json")
    answer = document_routes.get_result(
        document_id=document_id,
        request=request,
        runtime=runtime,
        session=session,
        tenant=console.tenant,
        format=formats[extension],  # type: ignore[arg-type]
    )
    answer.headers["Content-Disposition"] = f'attachment; filename="{document_id}.{extension}"'
    return answer


@router.get("/documents/{document_id}/pages/{page_no}")
def page_viewer(
    document_id: uuid.UUID,
    page_no: int,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    page = document_routes.get_page(
        document_id=document_id, page_no=page_no, runtime=runtime, session=session, tenant=console.tenant
    )
    numbers = [row.page_no for row in _page_rows(session, runtime, console.tenant, document_id)]
    base = f"/console/documents/{document_id}/pages/{page_no}/figures"
    figures = {figure.name: f"{base}/{figure.name}" for figure in page.figures}
    index = numbers.index(page_no)
    return render(
        request,
        "page.html",
        {
            **_signed_in(console),
            "title": f"Page {page_no}",
            "nav": "documents",
            "page": page,
            "figures": figures,
            "previous": numbers[index - 1] if index > 0 else None,
            "next": numbers[index + 1] if index + 1 < len(numbers) else None,
            "live": not PageState(page.state).is_terminal,
        },
    )


@router.get("/documents/{document_id}/pages/{page_no}/image")
def page_image(
    document_id: uuid.UUID,
    page_no: int,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    row = _own_page(session, console.tenant, document_id, page_no)
    if not row.drawn:
        return Response(UNDRAWN_PAGE_SVG, media_type="image/svg+xml", headers={"Cache-Control": "private"})
    image = runtime.store.get_bytes(row.image_key)  # an outage is a DomainError: a 503 page
    return Response(
        image,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.get("/documents/{document_id}/pages/{page_no}/figures/{name:path}")
def page_figure(
    document_id: uuid.UUID,
    page_no: int,
    name: str,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    row = _own_page(session, console.tenant, document_id, page_no)
    figure = next((figure for figure in row.figures or [] if figure["name"] == name), None)
    if figure is None:
        raise ApiError(404, "not_found", f"page {page_no} has no figure {name}")
    return Response(
        runtime.store.get_bytes(figure["key"]),
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )


# --- batches ---------------------------------------------------------------------------------


@router.get("/batches")
def batches(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    listing = batch_routes.list_batches(
        request=request,
        runtime=runtime,
        session=session,
        tenant=console.tenant,
        limit=PAGE_SIZE,
        cursor=cursor,
    )
    return render(
        request,
        "batches.html",
        {
            **_signed_in(console),
            "title": "Batches",
            "nav": "batches",
            "batches": listing.items,
            "next_cursor": listing.next_cursor,
            "live": any(not BatchState(batch.state).is_terminal for batch in listing.items),
        },
    )


@router.get("/batches/{batch_id}")
def batch(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    console: ConsoleSessionDep,
) -> Response:
    body = batch_routes.get_batch(
        batch_id=batch_id, request=request, runtime=runtime, session=session, tenant=console.tenant
    )
    rows = list(itertools.islice(report_rows(session, batch_id), REPORT_ROWS_SHOWN + 1))
    return render(
        request,
        "batch.html",
        {
            **_signed_in(console),
            "title": body.name,
            "nav": "batches",
            "batch": body,
            "rows": rows[:REPORT_ROWS_SHOWN],
            "truncated": len(rows) > REPORT_ROWS_SHOWN,
            "terminal": BatchState(body.state).is_terminal,
            "live": not BatchState(body.state).is_terminal,
        },
    )


@router.get("/batches/{batch_id}/report.csv")
def batch_report(
    batch_id: uuid.UUID, runtime: RuntimeDep, session: SessionDep, console: ConsoleSessionDep
) -> Response:
    return batch_routes.report(
        batch_id=batch_id, runtime=runtime, session=session, tenant=console.tenant, format="csv"
    )


@router.post("/batches/{batch_id}/retry-failed")
def retry_batch(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    console: ConsoleSessionDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    batch_routes.retry(
        batch_id=batch_id,
        request=request,
        runtime=runtime,
        uow=uow,
        tenant=console.tenant,
        include_partial=False,
    )
    return _back(f"/console/batches/{batch_id}")


@router.post("/batches/{batch_id}/cancel")
def cancel_batch(
    batch_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    console: ConsoleSessionDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    batch_routes.cancel(batch_id=batch_id, request=request, runtime=runtime, uow=uow, tenant=console.tenant)
    return _back(f"/console/batches/{batch_id}")


# --- usage -----------------------------------------------------------------------------------


def _usage_window() -> tuple[datetime, datetime]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=USAGE_DAYS - 1), today + timedelta(days=1)


@router.get("/usage")
def usage(request: Request, session: SessionDep, console: ConsoleSessionDep) -> Response:
    start, end = _usage_window()
    tenant_id = console.tenant.id
    by_day = {
        line.key: line for line in usage_lines(session, tenant_id, start=start, end=end, group_by=GroupBy.DAY)
    }
    days = [(start + timedelta(days=offset)).date().isoformat() for offset in range(USAGE_DAYS)]
    by_mode = usage_lines(session, tenant_id, start=start, end=end, group_by=GroupBy.MODE)

    def series(measure: str) -> list[tuple[str, float]]:
        return [(day, float(getattr(by_day[day], measure)) if day in by_day else 0.0) for day in days]

    mode_max = max((line.vision_tokens + line.output_tokens for line in by_mode), default=0)
    return render(
        request,
        "usage.html",
        {
            **_signed_in(console),
            "title": "Usage",
            "nav": "usage",
            "days": USAGE_DAYS,
            "charts": [
                bar_chart("Pages per day", series("pages"), height=140),
                bar_chart("Vision tokens per day", series("vision_tokens"), height=140),
                bar_chart("Output tokens per day", series("output_tokens"), height=140),
            ],
            "modes": by_mode,
            "models": usage_lines(session, tenant_id, start=start, end=end, group_by=GroupBy.MODEL),
            "mode_max": mode_max,
            "total": usage_total(session, tenant_id, start=start, end=end),
            "start": start,
            "end": end,
        },
    )


@router.get("/usage.csv")
def usage_csv(
    session: SessionDep, console: ConsoleSessionDep, group_by: Annotated[GroupBy, Query()] = GroupBy.DAY
) -> Response:
    start, end = _usage_window()
    return usage_routes.usage(
        session=session,
        tenant=console.tenant,
        start=start,
        end=end,
        group_by=group_by,
        model=None,
        format="csv",
    )


# --- webhooks --------------------------------------------------------------------------------


@router.get("/webhooks")
def webhooks(request: Request, session: SessionDep, console: ConsoleSessionDep) -> Response:
    endpoints = webhook_routes.list_endpoints(session=session, tenant=console.tenant)
    deliveries = webhook_routes.deliveries(session=session, tenant=console.tenant, limit=50)
    live = any(not DeliveryState(delivery.state).is_final for delivery in deliveries.items)
    return render(
        request,
        "webhooks.html",
        {
            **_signed_in(console),
            "title": "Webhooks",
            "nav": "webhooks",
            "endpoints": endpoints.items,
            "deliveries": deliveries.items,
            "live": live,
        },
    )


@router.post("/webhooks/deliveries/{delivery_id}/replay")
def replay(
    delivery_id: uuid.UUID,
    request: Request,
    runtime: RuntimeDep,
    uow: UnitOfWorkDep,
    console: ConsoleSessionDep,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    auth.check_csrf(request, csrf_token, console.csrf_token)
    webhook_routes.replay_delivery(delivery_id=delivery_id, runtime=runtime, uow=uow, tenant=console.tenant)
    return _back("/console/webhooks")
