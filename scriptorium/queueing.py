"""The Celery application shared by every broker client, and publishing of task messages.

Redis only carries signals: each message names a document (and page) whose row in Postgres
says what to do. Settings follow the measured reliability notes: late acks, requeue when a
worker is lost, prefetch one, a visibility timeout far above the hard time limit, no result
backend and no chords.

CPU work shares one queue. GPU work has a queue per model family (:func:`gpu_queue`): a GPU
worker serves one family and consumes only that family's queue, so an OCR message reaches a
worker that holds the model its pages were uploaded for.
"""

from __future__ import annotations

from celery import Celery

from scriptorium.logging import get_logger
from scriptorium.messages import (
    ASSEMBLE_TASK,
    DELIVER_WEBHOOKS_TASK,
    EXPAND_BATCH_TASK,
    INGEST_WATCH_TASK,
    OCR_TASK,
    POLL_WATCHES_TASK,
    PREPARE_TASK,
    Message,
)
from scriptorium.model_families import ModelFamily
from scriptorium.settings import Settings

CPU_QUEUE = "scriptorium.cpu"
GPU_QUEUE_PREFIX = "scriptorium.gpu."


def gpu_queue(model: str) -> str:
    """The queue of OCR messages for pages of ``model`` (a family name, e.g. ``deepseek-ocr``)."""
    return f"{GPU_QUEUE_PREFIX}{ModelFamily(model).value}"


GPU_QUEUES: tuple[str, ...] = tuple(gpu_queue(family) for family in ModelFamily)

log = get_logger(__name__)


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
            ASSEMBLE_TASK: {"queue": CPU_QUEUE},
            DELIVER_WEBHOOKS_TASK: {"queue": CPU_QUEUE},
            EXPAND_BATCH_TASK: {"queue": CPU_QUEUE},
            POLL_WATCHES_TASK: {"queue": CPU_QUEUE},
            INGEST_WATCH_TASK: {"queue": CPU_QUEUE},
        },  # OCR_TASK has no route: each message names its family's queue (queue_of)
        beat_schedule={
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


def queue_of(message: Message) -> str | None:
    """The queue a message goes to: its family's GPU queue for OCR, else the task's route."""
    if message.task == OCR_TASK:
        if message.model is None:
            raise ValueError("an OCR message must name its model family")
        return gpu_queue(message.model)
    return None


class Publisher:
    """Sends task messages; a failed publish is logged and left for the sweeper to repeat."""

    def __init__(self, app: Celery) -> None:
        self._app = app

    def publish(self, messages: list[Message]) -> int:
        """Send each message; returns how many the broker took."""
        return sum(self._send(message) for message in messages)

    def _send(self, message: Message) -> bool:
        queue = queue_of(message)
        routing = {"queue": queue} if queue is not None else {}
        try:
            self._app.send_task(
                message.task,
                kwargs=message.kwargs,
                **routing,
                priority=message.priority,
                countdown=message.countdown,
                retry=True,
                retry_policy={"max_retries": 2},
            )
        except Exception as error:  # the broker is down: the database still says what is due
            log.warning("publish.failed", task=message.task, error=str(error), **message.kwargs)
            return False
        return True
