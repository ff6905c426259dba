"""The one place failures become HTTP answers: ``{"error": {"code": …, "message": …}}``.

The domain raises :class:`scriptorium.errors.DomainError` subclasses carrying a reason code and
a status; request validation, unknown routes and unexpected exceptions are answered in the same
envelope (the last with 500 ``internal_error``, logged with the request id, never the detail).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scriptorium.errors import DomainError
from scriptorium.logging import get_logger

log = get_logger(__name__)


class ApiError(DomainError):
    """A refusal only the HTTP edge makes (authentication, rate limits, request framing)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(code, message, status=status, headers=headers)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(error: DomainError) -> JSONResponse:
    return JSONResponse(
        error_body(error.code, error.message), status_code=error.status, headers=error.headers or None
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, error: DomainError) -> JSONResponse:
        if error.transient:
            log.error("dependency.unavailable", code=error.code, error=str(error))
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in error.errors()
        )
        return JSONResponse(error_body("invalid_request", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return JSONResponse(error_body(code, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("request.failed", path=request.url.path, error_type=type(error).__name__)
        return JSONResponse(
            error_body("internal_error", "the request failed unexpectedly; it was logged"), status_code=500
        )
