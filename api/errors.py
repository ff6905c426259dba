"""API errors: every failure answers ``{"error": {"code": …, "message": …}}``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from scriptorium.acceptance import OptionsRejected
from scriptorium.errors import InputRejected, ReasonCode
from scriptorium.storage import StorageUnavailable, UploadTooLarge


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Answer an upload that is too large with 413 and an unreachable object store with 503."""
    try:
        yield
    except UploadTooLarge as error:
        raise ApiError(
            413, ReasonCode.TOO_LARGE.value, f"{what} is limited to {error.limit} bytes"
        ) from error
    except StorageUnavailable as error:
        structlog.get_logger(__name__).error("storage.unavailable", error=str(error))
        raise ApiError(
            503,
            ReasonCode.STORAGE.value,
            "object storage is unavailable; retry later",
            headers={"Retry-After": "10"},
        ) from error


@contextmanager
def options_errors() -> Iterator[None]:
    """Answer document options that do not validate with 422 and their reason code."""
    try:
        yield
    except OptionsRejected as rejected:
        raise ApiError(422, rejected.code, rejected.message) from rejected


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(error.code, error.message), status_code=error.status, headers=error.headers
        )

    @app.exception_handler(InputRejected)
    async def _rejected(_: Request, error: InputRejected) -> JSONResponse:
        return JSONResponse(error_body(error.reason.value, error.message), status_code=422)

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
