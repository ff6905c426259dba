"""The periodic repair pass: expired leases, exhausted pages, lost messages, stuck preparation
and stuck batch intake."""

from __future__ import annotations

from scriptorium.batches.expansion import stalled_intake
from scriptorium.db.session import transaction
from scriptorium.lifecycle import SweepReport, plan_dispatch, sweep, try_sweeper_lock
from scriptorium.logging import get_logger
from worker.assembly import store_document_result
from worker.ingestion import INTAKE_ATTEMPTS
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
        plan.merge(dispatch)
        intake_resend, _ = stalled_intake(
            session, lost_after_s=limits.lost_message_after_s, max_attempts=INTAKE_ATTEMPTS
        )
    runtime.publisher.publish(plan)
    for batch_id in intake_resend:
        runtime.publisher.send_expand_batch(batch_id)
    for event in report.documents_finished:
        if event.document_id is not None:
            store_document_result(runtime, event.document_id)
    if report.requeued or report.dead or plan.documents or plan.pages or intake_resend:
        log.info(
            "sweep.repaired",
            requeued=report.requeued,
            dead=report.dead,
            prepare_resent=report.prepare_resent,
            prepare_sent=len(plan.documents),
            pages_dispatched=len(plan.pages),
            documents_finished=len(report.documents_finished),
            intake_resent=len(intake_resend),
        )
    return report
