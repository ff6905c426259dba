"""The Celery application shared by every broker client, and publishing of task messages.

Redis only carries signals: each message names a document (and page) whose row in Postgres
says what to do. Settings follow the measured reliability notes: late acks, requeue when a
worker is lost, prefetch one, a visibility timeout far above the hard time limit, no result
backend and no chords.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery

from scriptorium.lifecycle import DispatchPlan
from scriptorium.logging import get_logger
from scriptorium.settings import Settings
from scriptorium.states import Lane

CPU_QUEUE = "scriptorium.cpu"
GPU_QUEUE = "scriptorium.gpu"
PREPARE_TASK = "scriptorium.prepare"
OCR_TASK = "scriptorium.ocr_page"
SWEEP_TASK = "scriptorium.sweep"
ASSEMBLE_TASK = "scriptorium.assemble_result"
DELIVER_WEBHOOKS_TASK = "scriptorium.deliver_webhooks"
EXPAND_BATCH_TASK = "scriptorium.expand_batch"  # a batch's intake: discover inputs, make documents
POLL_WATCHES_TASK = "scriptorium.poll_watches"  # the polling fallback of watched prefixes
INGEST_WATCH_TASK = "scriptorium.ingest_watch"  # turn a watch's recorded objects into documents

log = get_logger(__name__)

# Redis serves a queue's lower priority numbers first (kombu's priority_steps 0, 3, 6, 9): the
# bulk lane's messages wait behind every interactive one, on the CPU and the GPU queue alike.
LANE_PRIORITY = {Lane.INTERACTIVE: 0, Lane.BULK: 9}


def create_celery(settings: Settings, *, main: str = "scriptorium") -> Celery:
    """A Celery app configured identically for the API, workers and beat."""
    limits = settings.limits
    visibility = settings.redis.visibility_timeout_s
    if visibility <= limits.page_hard_time_limit_s:
        raise ValueError("redis.visibility_timeout_s must be far above limits.page_hard_time_limit_s")
    app = Celery(main, broker=settings.redis.url, set_as_current=False)
    transport = {
        "visibility_timeout": visibility,
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
        "queue_order_strategy": "priority",
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }
    app.conf.update(
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": visibility},
        visibility_timeout=visibility,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_proc_alive_timeout=600,
        worker_max_tasks_per_child=None,
        task_time_limit=limits.page_hard_time_limit_s,
        task_soft_time_limit=limits.page_soft_time_limit_s,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_default_queue=CPU_QUEUE,
        task_routes={
            PREPARE_TASK: {"queue": CPU_QUEUE},
            SWEEP_TASK: {"queue": CPU_QUEUE},
            ASSEMBLE_TASK: {"queue": CPU_QUEUE},
            DELIVER_WEBHOOKS_TASK: {"queue": CPU_QUEUE},
            EXPAND_BATCH_TASK: {"queue": CPU_QUEUE},
            POLL_WATCHES_TASK: {"queue": CPU_QUEUE},
            INGEST_WATCH_TASK: {"queue": CPU_QUEUE},
            OCR_TASK: {"queue": GPU_QUEUE},
        },
        beat_schedule={
            "sweep": {"task": SWEEP_TASK, "schedule": limits.sweep_interval_s, "options": {"expires": 60}},
            "deliver-webhooks": {
                "task": DELIVER_WEBHOOKS_TASK,
                "schedule": settings.webhooks.poll_interval_s,
                "options": {"expires": max(10.0, 5 * settings.webhooks.poll_interval_s)},
            },
            "poll-watches": {  # each watch is listed once per interval; the beat looks more often
                "task": POLL_WATCHES_TASK,
                "schedule": max(1.0, settings.intake.watch_poll_interval_s / 3),
                "options": {"expires": max(10.0, settings.intake.watch_poll_interval_s)},
            },
        },
    )
    return app


class Publisher:
    """Sends task messages; a failed publish is logged and left for the sweeper to repeat."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def send_prepare(
        self, document_id: uuid.UUID, request_id: str | None, lane: Lane = Lane.INTERACTIVE
    ) -> bool:
        return self._send(
            PREPARE_TASK,
            {"document_id": str(document_id), "request_id": request_id},
            priority=LANE_PRIORITY[lane],
        )

    def send_ocr(
        self, document_id: uuid.UUID, page_no: int, request_id: str | None, lane: Lane = Lane.INTERACTIVE
    ) -> bool:
        return self._send(
            OCR_TASK,
            {"document_id": str(document_id), "page_no": page_no, "request_id": request_id},
            priority=LANE_PRIORITY[lane],
        )

    def send_expand_batch(
        self, batch_id: uuid.UUID, lane: Lane = Lane.BULK, *, countdown: float | None = None
    ) -> bool:
        """Run (or go on with) a batch's intake, now or after ``countdown`` seconds."""
        return self._send(
            EXPAND_BATCH_TASK, {"batch_id": str(batch_id)}, priority=LANE_PRIORITY[lane], countdown=countdown
        )

    def send_ingest_watch(self, watch_id: uuid.UUID) -> bool:
        return self._send(INGEST_WATCH_TASK, {"watch_id": str(watch_id)}, priority=LANE_PRIORITY[Lane.BULK])

    def send_assemble(self, document_id: uuid.UUID) -> bool:
        """Write a finished document's assembled files; CPU work kept off the GPU worker."""
        return self._send(ASSEMBLE_TASK, {"document_id": str(document_id)})

    def send_deliver_webhooks(self) -> bool:
        """Ask a sender to look for due webhook deliveries now rather than at its next poll."""
        return self._send(DELIVER_WEBHOOKS_TASK, {})

    def publish(self, plan: DispatchPlan) -> int:
        sent = 0
        for document_id, request_id in plan.documents:
            sent += self.send_prepare(document_id, request_id, plan.lane_of(document_id))
        for document_id, page_no, request_id in plan.pages:
            sent += self.send_ocr(document_id, page_no, request_id, plan.lane_of(document_id))
        return sent

    def _send(
        self, name: str, kwargs: dict[str, Any], *, priority: int = 0, countdown: float | None = None
    ) -> bool:
        try:
            self._app.send_task(
                name,
                kwargs=kwargs,
                priority=priority,
                countdown=countdown,
                retry=True,
                retry_policy={"max_retries": 2},
            )
        except Exception as error:  # the broker is down: the database still says what is due
            log.warning("publish.failed", task=name, error=str(error), **kwargs)
            return False
        return True
