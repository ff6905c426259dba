"""What every worker task shares: log context from its ids, and waiting out dependency outages.

A task whose object store, named source or database is unreachable has done nothing wrong: it
is put back with exponential backoff (capped), without limit, and each wait is logged and
counted (``scriptorium_dependency_waits``). The work it had claimed is released first by the
task itself, with the attempt refunded (see ``release_claim(page_at_fault=False)``), so an
outage never dead-letters a page or fails a document. Every other exception propagates: the
message is acknowledged as failed and the row's lease and attempt counter decide what happens.
A task cancelled by its worker (see :mod:`worker.cancellation`) has released its claims; its
message is acknowledged without a retry, and Postgres sends the work again.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from celery import Task
from celery.exceptions import Ignore
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from scriptorium import metrics
from scriptorium.errors import DomainError
from scriptorium.logging import bind_context, clear_context, get_logger
from worker.cancellation import TaskCancelled, cancellable

log = get_logger(__name__)

BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 60.0


def is_transient(error: BaseException) -> bool:
    """An outage of something the task depends on, not a fault of the work itself."""
    if isinstance(error, DomainError):
        return error.transient
    # A dropped connection, and also one refused or timed out while the server restarts
    # (psycopg raises those as OperationalError before any connection exists to invalidate).
    return isinstance(error, DBAPIError) and (
        error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    )


def dependency_of(error: BaseException) -> str:
    if isinstance(error, DomainError):
        return error.code
    return "database"


def backoff_s(retries: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(retries, 10)))


class FleetTask(Task):  # type: ignore[misc]
    """The base of every Scriptorium task."""

    # Outages are waited out without limit. ``retry(max_retries=None)`` alone does not say so: Celery
    # reads None there as "the task's default", which is 3 (a fourth storage outage retry raised).
    max_retries = None
    # SIGTERM from the worker raises TaskCancelled in the task (set for tasks that clean up).
    cancellable = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        clear_context()
        bind_context(
            task_id=self.request.id,
            request_id=kwargs.get("request_id"),
            document_id=kwargs.get("document_id"),
            page_no=kwargs.get("page_no"),
            batch_id=kwargs.get("batch_id"),
        )
        try:
            with cancellable() if self.cancellable else nullcontext():
                return super().__call__(*args, **kwargs)
        except TaskCancelled:
            metrics.count_dependency_wait("broker", self.name)
            log.warning("task.cancelled", why="the worker lost its broker connection or is exiting")
            raise Ignore() from None
        except Exception as error:
            if not is_transient(error):
                raise
            retries = self.request.retries or 0
            countdown = backoff_s(retries)
            dependency = dependency_of(error)
            metrics.count_dependency_wait(dependency, self.name)
            log.warning(
                "task.waiting_for_dependency",
                dependency=dependency,
                error=str(error),
                retry_in_s=countdown,
                retries=retries,
            )
            raise self.retry(exc=error, countdown=countdown, max_retries=None) from error
        finally:
            clear_context()
