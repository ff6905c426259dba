"""``alembic upgrade head`` on an empty database, then ``alembic check`` for model drift."""

from __future__ import annotations

from scriptorium.db.migrate import check, upgrade
from tests.support.services import postgres_database


def main() -> None:
    with postgres_database() as url:
        upgrade(url)
        check(url)
    print("migrations: upgrade head on an empty database and drift check passed")


if __name__ == "__main__":
    main()
