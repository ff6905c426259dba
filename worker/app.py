"""The worker's Celery application: task definitions and per-process start-up.

Each pool process builds its own runtime (database pool, storage client, and for GPU workers
the resident engine) after the fork, in ``worker_process_init``; readiness is announced only
after the engine has been warmed up, and a GPU process then keeps its ``gpu_workers`` row fresh
(``worker.heartbeat``) until it shuts down. Task messages carry ids only; every task derives from
:class:`worker.task_base.FleetTask` (log context, dependency outages waited out).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, signals

from scriptorium import metrics
from scriptorium.dedup import announce_revision
from scriptorium.logging import get_logger
from scriptorium.messages import (
    ASSEMBLE_TASK,
    DELIVER_WEBHOOKS_TASK,
    EXPAND_BATCH_TASK,
    INGEST_WATCH_TASK,
    OCR_TASK,
    POLL_WATCHES_TASK,
    PREPARE_TASK,
)
from scriptorium.queueing import create_celery
from scriptorium.settings import Settings
from worker.assembly import store_document_result
from worker.cancellation import listen_for_stop
from worker.heartbeat import Heartbeat
from worker.ingestion import expand_batch, ingest_watch, poll_watches
from worker.ocr import ocr_batch
from worker.preparation import prepare_document
from worker.runtime import EngineFactory, WorkerRuntime
from worker.task_base import FleetTask
from worker.webhook_sender import deliver_webhooks

log = get_logger(__name__)


class ProcessState:
    """The runtime of this process, built once after fork."""

    def __init__(
        self, settings: Settings, engine_factory: EngineFactory | None, ready_file: Path | None
    ) -> None:
        self.settings = settings
        self.engine_factory = engine_factory
        self.ready_file = ready_file
        self._runtime: WorkerRuntime | None = None
        self.heartbeat: Heartbeat | None = None

    def start(self) -> WorkerRuntime:
        if self._runtime is not None:
            return self._runtime
        runtime = WorkerRuntime.build(self.settings)
        if self.engine_factory is not None:
            started = time.perf_counter()
            engine = self.engine_factory(self.settings)
            loaded = time.perf_counter()
            if self.settings.engine.warmup:
                engine.warmup()
            runtime.ocr_engine = engine
            with runtime.units.committing() as uow:
                # dedup reuses only results of the weights served now for this family
                announce_revision(uow.session, engine.revision, engine.model)
            metrics.record_engine_ready(
                engine, load_seconds=loaded - started, warmup_seconds=time.perf_counter() - loaded
            )
            log.info("engine.ready", revision=engine.revision, model=engine.model)
            self.heartbeat = Heartbeat(
                runtime.units,
                identity=runtime.identity,
                model=engine.model,
                model_revision=engine.revision,
                interval_s=self.settings.limits.gpu_heartbeat_s,
            )
            self.heartbeat.start()
        else:
            runtime.render_sandbox().prestart()  # CPU workers prepare documents: have the render child ready
        self._runtime = runtime
        if self.ready_file is not None:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            self.ready_file.write_text(runtime.identity)
        return runtime

    @property
    def runtime(self) -> WorkerRuntime:
        return self.start()

    def shut_down(self) -> None:
        """A clean exit of this process: its GPU worker row goes with it."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None


def create_worker_app(
    settings: Settings, *, engine_factory: EngineFactory | None = None, ready_file: Path | None = None
) -> Celery:
    app = create_celery(settings)
    state = ProcessState(settings, engine_factory, ready_file)
    app.conf.scriptorium_state = state

    @signals.worker_process_init.connect(weak=False)  # type: ignore[untyped-decorator]
    def _start_process(**_: Any) -> None:
        listen_for_stop()
        state.start()

    @signals.worker_process_shutdown.connect(weak=False)  # type: ignore[untyped-decorator]
    def _stop_process(**_: Any) -> None:
        state.shut_down()

    @app.task(name=PREPARE_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def prepare(document_id: str, request_id: str | None = None) -> None:
        prepare_document(state.runtime, uuid.UUID(document_id))

    @app.task(name=OCR_TASK, base=FleetTask, cancellable=True)  # type: ignore[untyped-decorator]
    def ocr(pages: list[list[Any]], request_id: str | None = None, model: str | None = None) -> None:
        ocr_batch(
            state.runtime, [(uuid.UUID(str(document_id)), int(page_no)) for document_id, page_no in pages]
        )
        metrics.record_device_memory(state.runtime.ocr_engine)

    @app.task(name=ASSEMBLE_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def assemble(document_id: str) -> None:
        store_document_result(state.runtime, uuid.UUID(document_id))

    @app.task(name=EXPAND_BATCH_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def expand(batch_id: str) -> None:
        expand_batch(state.runtime, uuid.UUID(batch_id))

    @app.task(name=POLL_WATCHES_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def poll() -> None:
        poll_watches(state.runtime)

    @app.task(name=INGEST_WATCH_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def ingest(watch_id: str) -> None:
        ingest_watch(state.runtime, uuid.UUID(watch_id))

    @app.task(name=DELIVER_WEBHOOKS_TASK, base=FleetTask)  # type: ignore[untyped-decorator]
    def deliver() -> None:
        deliver_webhooks(state.runtime.sessions, state.runtime.settings)

    return app
