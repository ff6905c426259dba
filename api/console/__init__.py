"""The web console: server-rendered pages under /console over the API's own handlers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.console.routes import router
from api.console.views import STATIC_DIR


def install_console(app: FastAPI) -> None:
    """Serve the console and its pinned static assets (no CDN: air-gapped hosts work)."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
