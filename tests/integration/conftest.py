"""Fixtures shared by integration test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scriptorium.settings import Settings
from worker.runtime import WorkerRuntime


@pytest.fixture(scope="module")
def runtime(settings: Settings) -> Iterator[WorkerRuntime]:
    """A worker's runtime (database, storage, broker) for calling task bodies in-process."""
    built = WorkerRuntime.build(settings)
    yield built
    built.close()
