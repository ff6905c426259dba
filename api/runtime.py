"""What the API process builds once at start-up and shares between requests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine as DbEngine
from sqlalchemy.orm import Session, sessionmaker

from scriptorium.db.session import make_engine, make_session_factory
from scriptorium.queueing import Publisher, create_celery
from scriptorium.settings import Settings
from scriptorium.storage import ObjectStore
from scriptorium.unit_of_work import UnitOfWorkFactory


@dataclass
class ApiRuntime:
    settings: Settings
    db: DbEngine
    sessions: sessionmaker[Session]
    store: ObjectStore
    units: UnitOfWorkFactory

    @classmethod
    def build(cls, settings: Settings) -> ApiRuntime:
        db = make_engine(settings.db)
        sessions = make_session_factory(db)
        return cls(
            settings=settings,
            db=db,
            sessions=sessions,
            store=ObjectStore(settings.storage),
            units=UnitOfWorkFactory(sessions, Publisher(create_celery(settings))),
        )

    def close(self) -> None:
        self.db.dispose()
