"""Machine-readable reasons a document or page fails, with the sentence a human reads."""

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


class InputRejected(Exception):
    """A document that cannot be processed as sent. Permanent: retrying changes nothing."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
