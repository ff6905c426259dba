"""The periodic repair pass: expired leases, exhausted pages, lost messages, stuck preparation
and stuck batch intake."""

from __future__ import annotations

from scriptorium.batches.expansion import stalled_intake
from scriptorium.batches.leftovers import discard_leftovers
from scriptorium.dispatch import admit_and_dispatch
from scriptorium.lifecycle.sweeping import SweepReport, sweep, try_sweeper_lock
from scriptorium.logging import get_logger
from worker.ingestion import INTAKE_ATTEMPTS
from worker.preparation import PREPARE_ATTEMPTS
from worker.runtime import WorkerRuntime

log = get_logger(__name__)


def run_sweep(runtime: WorkerRuntime, *, lease_grace_s: int = 0) -> SweepReport | None:
    """One sweep; returns None when another sweeper holds the lock."""
    limits = runtime.settings.limits
    with runtime.units.committing() as uow:
        if not try_sweeper_lock(uow):
            return None
        report = sweep(
            uow,
            lost_after_s=limits.lost_message_after_s,
            prepare_attempts=PREPARE_ATTEMPTS,
            lease_grace_s=lease_grace_s,
        )
        admit_and_dispatch(
            uow,
            depth=limits.dispatch_depth,
            lost_after_s=limits.lost_message_after_s,
            batch_pages=runtime.settings.engine.max_batch_pages,
        )
        intake_resend, intake_failed = stalled_intake(
            uow.session, lost_after_s=limits.lost_message_after_s, max_attempts=INTAKE_ATTEMPTS
        )
        for batch_id in intake_resend:
            uow.outbox.expand_batch(batch_id)
        messages = len(uow.outbox.messages)
        given_up = [event.batch_id for event in intake_failed if event.batch_id is not None]
    with runtime.sessions() as session:  # after the commit: what the given-up batches left behind
        for batch_id in given_up:
            discard_leftovers(session, runtime.store, batch_id)
    if report.requeued or report.dead or messages:
        log.info(
            "sweep.repaired",
            requeued=report.requeued,
            dead=report.dead,
            prepare_resent=report.prepare_resent,
            messages=messages,
            documents_finished=len(report.documents_finished),
            intake_resent=len(intake_resend),
        )
    return report
