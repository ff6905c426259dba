"""Structured logging for every process: JSON in production, readable in development.

Context (``request_id``, ``tenant``, ``document_id``, ``page_no``, ``task_id``) is carried in
contextvars: the API binds it per request, Celery tasks bind it on start and clear it on end.
Standard-library loggers (uvicorn, celery, sqlalchemy) are routed through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager
from typing import Any

import structlog

CONTEXT_KEYS = ("request_id", "tenant", "document_id", "page_no", "task_id")


def configure_logging(*, level: str = "INFO", json_output: bool = False) -> None:
    """Install structlog and a root handler; safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_output else _passthrough,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "urllib3", "httpx", "httpcore", "multipart"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _passthrough(_: Any, __: str, event_dict: Any) -> Any:
    return event_dict


def bind_context(**values: Any) -> None:
    """Bind the given context keys (None values are skipped) for the rest of this task/request."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def bound_context(**values: Any) -> AbstractContextManager[Any]:
    """Bind context keys for a block and restore the previous values after it."""
    return structlog.contextvars.bound_contextvars(**values)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
