"""What a worker process builds once (in the pool child, after fork) and shares between tasks."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine as DbEngine
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.queueing import Publisher, create_celery
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from scriptorium.unit_of_work import UnitOfWork, UnitOfWorkFactory
from worker.engine.base import Engine
from worker.prepare.sandbox import RenderSandbox
from worker.routing.tokens import TokenCounter, token_counter

EngineFactory = Callable[[Settings], Engine]


@dataclass
class WorkerRuntime:
    settings: Settings
    db: DbEngine
    sessions: sessionmaker[Session]
    store: ObjectStore
    units: UnitOfWorkFactory
    ocr_engine: Engine | None = None
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    _token_counter: TokenCounter | None = None
    _render_sandbox: RenderSandbox | None = None

    @classmethod
    def build(cls, settings: Settings) -> WorkerRuntime:
        db = make_engine(settings.db)
        sessions = make_session_factory(db)
        return cls(
            settings=settings,
            db=db,
            sessions=sessions,
            store=ObjectStore(settings.storage),
            units=UnitOfWorkFactory(sessions, Publisher(create_celery(settings))),
        )

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work; use it as a context manager and call ``commit()``."""
        return self.units()

    def token_counter(self) -> TokenCounter:
        """The real tokenizer when the model directory is mounted here, else calibrated rates."""
        if self._token_counter is None:
            model_dir = Path(self.settings.engine.model_path)
            self._token_counter = token_counter(model_dir if model_dir.is_dir() else None)
        return self._token_counter

    def render_sandbox(self) -> RenderSandbox:
        """This process's warm render child (started on first use, replaced after faults and quotas)."""
        if self._render_sandbox is None:
            self._render_sandbox = RenderSandbox(self.settings.prepare)
        return self._render_sandbox

    def require_ocr_engine(self) -> Engine:
        if self.ocr_engine is None:
            raise RuntimeError("this worker has no OCR engine loaded; start it with the GPU queue")
        return self.ocr_engine

    def close(self) -> None:
        if self._render_sandbox is not None:
            self._render_sandbox.close()
        self.db.dispose()
