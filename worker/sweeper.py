"""The periodic repair pass: expired leases, exhausted pages, lost messages, stuck preparation."""

from __future__ import annotations

from scriptorium.db.session import transaction
from scriptorium.lifecycle import SweepReport, plan_dispatch, sweep, try_sweeper_lock
from scriptorium.logging import get_logger
from worker.assembly import store_document_result
from worker.preparation import PREPARE_ATTEMPTS
from worker.runtime import WorkerRuntime

log = get_logger(__name__)


def run_sweep(runtime: WorkerRuntime) -> SweepReport | None:
    """One sweep; returns None when another sweeper holds the lock."""
    limits = runtime.settings.limits
    with transaction(runtime.sessions) as session:
        if not try_sweeper_lock(session):
            return None
        report, plan = sweep(
            session, lost_after_s=limits.lost_message_after_s, prepare_attempts=PREPARE_ATTEMPTS
        )
        dispatch = plan_dispatch(
            session, depth=limits.dispatch_depth, lost_after_s=limits.lost_message_after_s
        )
        plan.pages.extend(dispatch.pages)
    runtime.publisher.publish(plan)
    for event in report.documents_finished:
        store_document_result(runtime, event.document_id)
    if report.requeued or report.dead or report.prepare_resent or plan.pages:
        log.info(
            "sweep.repaired",
            requeued=report.requeued,
            dead=report.dead,
            prepare_resent=report.prepare_resent,
            pages_dispatched=len(plan.pages),
            documents_finished=len(report.documents_finished),
        )
    return report
