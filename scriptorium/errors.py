"""Failures the domain reports: a machine-readable reason code, an HTTP status, a sentence.

Every error a client can cause or must be told about is a :class:`DomainError`. The domain
raises it; the API turns it into ``{"error": {"code", "message"}}`` in one place
(``api/errors.py``); workers record its code on the row it concerns. ``transient`` marks an
outage of a dependency (storage, a source): worth trying again later, never the input's fault.
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    UNSUPPORTED_TYPE = "unsupported_type"
    CORRUPT = "corrupt"
    ENCRYPTED = "encrypted"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TOO_MANY_PAGES = "too_many_pages"
    PAGE_TOO_LARGE = "page_too_large"
    INVALID_PAGES = "invalid_pages"
    RENDER_TIMEOUT = "render_timeout"
    RENDER_CRASHED = "render_crashed"
    STORAGE = "storage"
    ENGINE_ERROR = "engine_error"
    TIMEOUT = "timeout"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    UNDER_READ = "under_read"
    CANCELLED = "cancelled"


class DomainError(Exception):
    """A failure with a reason code and the HTTP status it answers with."""

    status: int = 422
    transient: bool = False

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = str(code)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class NotFound(DomainError):
    status = 404

    def __init__(self, message: str) -> None:
        super().__init__("not_found", message)


class Conflict(DomainError):
    """The resource is not in a state that allows the request."""

    status = 409


class InputRejected(DomainError):
    """A document that cannot be processed as sent. Permanent: retrying changes nothing."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason


class DependencyUnavailable(DomainError):
    """A dependency (object storage, a named source) is down; the same request may succeed later."""

    status = 503
    transient = True
    retry_after_s = 10

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, headers={"Retry-After": str(self.retry_after_s)})
