"""``/metrics``: the backlog in Postgres, in the Prometheus text format.

Queue depth and the age of the oldest waiting page are read from Postgres at scrape time; the
workers export what they count themselves (``worker.metrics_server``).
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import RuntimeDep
from scriptorium.metrics import backlog_registry

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(
        generate_latest(
            backlog_registry(runtime.sessions, gone_after_s=runtime.settings.limits.gpu_worker_gone_after_s)
        ),
        media_type=CONTENT_TYPE_LATEST,
    )
