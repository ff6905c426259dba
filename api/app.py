"""The FastAPI application: the HTTP edge of the fleet."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from api.console import install_console
from api.errors import install_error_handlers
from api.ratelimit import RateLimiter
from api.routes import batches, documents, health, keys, metrics, usage, watches, webhooks
from api.runtime import ApiRuntime
from scriptorium import __version__
from scriptorium.logging import bind_context, clear_context, get_logger
from scriptorium.settings import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
log = get_logger(__name__)


def create_app(settings: Settings, runtime: ApiRuntime | None = None) -> FastAPI:
    """Build the app; the runtime (database, storage, broker) is created at start-up unless given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or ApiRuntime.build(settings)
        app.state.rate_limiter = RateLimiter.connect(settings.redis.url, settings.rate_limit)
        try:
            yield
        finally:
            app.state.rate_limiter.close()
            if owned:
                app.state.runtime.close()

    app = FastAPI(
        title="Scriptorium",
        version=__version__,
        description=(
            "Turns documents into markdown and layout JSON with DeepSeek-OCR. Uploads are accepted "
            "with 202 and processed asynchronously; poll the document or subscribe to webhooks."
        ),
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        clear_context()
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.state.request_id = request_id
        bind_context(request_id=request_id)
        response = await call_next(request)
        response.headers["X-Request-ID"] = request_id
        return response

    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(documents.router)
    app.include_router(batches.router)
    app.include_router(watches.router)
    app.include_router(webhooks.router)
    app.include_router(usage.router)
    app.include_router(keys.router)
    install_console(app)
    return app


def openapi_document(settings: Settings | None = None) -> dict[str, object]:
    """The OpenAPI schema, built without connecting to anything."""
    app = create_app(settings or Settings())
    return app.openapi()
