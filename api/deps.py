"""Request-scoped dependencies: the runtime, the unit of work (and its session) and the calling tenant."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.errors import ApiError
from api.ratelimit import RateLimiter
from api.runtime import ApiRuntime
from scriptorium.api_keys import authenticate
from scriptorium.db.models import Tenant
from scriptorium.logging import bind_context
from scriptorium.unit_of_work import UnitOfWork


def get_runtime(request: Request) -> ApiRuntime:
    runtime: ApiRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ApiRuntime, Depends(get_runtime)]


def public_base_url(request: Request, runtime: ApiRuntime) -> str:
    """The base URL clients reach the API at, for Location headers and links."""
    return runtime.settings.api.public_url.rstrip("/") or str(request.base_url).rstrip("/")


def get_unit_of_work(runtime: RuntimeDep) -> Iterator[UnitOfWork]:
    """The request's unit of work: routes that change something call ``uow.commit()``."""
    with runtime.units() as uow:
        yield uow


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def get_session(uow: UnitOfWorkDep) -> Session:
    """The request's session, for routes that only read (the same one as the unit of work's)."""
    return uow.session


SessionDep = Annotated[Session, Depends(get_session)]


def get_tenant(request: Request, uow: UnitOfWorkDep) -> Tenant:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise ApiError(
            401,
            "unauthorized",
            "send Authorization: Bearer <api key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    api_key = authenticate(uow.session, key.strip())  # KeyRefused (401) says why not
    request.state.api_key_id = api_key.id  # the key this request came with (POST /v1/keys/rotate)
    tenant = api_key.tenant
    bind_context(tenant=tenant.name)
    uow.commit()  # end the read transaction before the request does real work
    _within_rate_limit(request, tenant)
    return tenant


def _within_rate_limit(request: Request, tenant: Tenant) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    decision = limiter.take(tenant.id, limiter.limit_for(tenant.rate_limit_per_s, tenant.rate_limit_burst))
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests; retry in {decision.retry_after_s} s",
            headers={"Retry-After": str(decision.retry_after_s)},
        )


TenantDep = Annotated[Tenant, Depends(get_tenant)]
