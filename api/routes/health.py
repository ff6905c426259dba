"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import RuntimeDep
from scriptorium.storage import StorageUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database, Redis and object storage are reachable")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with runtime.db.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {type(error).__name__}"
    try:
        client = redis.Redis.from_url(runtime.settings.redis.url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        checks["redis"] = "ok"
    except redis.RedisError as error:
        checks["redis"] = f"error: {type(error).__name__}"
    try:
        runtime.store.ping()
        checks["storage"] = "ok"
    except StorageUnavailable as error:
        checks["storage"] = f"error: {error}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
