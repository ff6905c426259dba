"""Console sign-in: an API key is exchanged for a signed session cookie; forms carry a CSRF token.

The cookie holds the key's public prefix, the tenant id and the session's CSRF token, signed with
HMAC-SHA256 over ``SECRET_KEY`` (never the key itself). Each request re-reads the key row, so a
revoked key ends its sessions at once. State-changing forms must echo the CSRF token, and their
Origin, when the browser sends one, must be this site.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.deps import RuntimeDep, UnitOfWorkDep
from api.deps import _within_rate_limit as within_rate_limit
from scriptorium.api_keys import authenticate
from scriptorium.db.models import ApiKey, Tenant
from scriptorium.settings import Settings

SESSION_COOKIE = "scriptorium_console"
LOGIN_COOKIE = "scriptorium_console_login"
LOGIN_TTL_S = 1800
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """The request has no valid console session; the console answers with the sign-in page."""


class CsrfRejected(Exception):
    """A state-changing request without this session's CSRF token, or from another origin."""


@dataclass(frozen=True)
class ConsoleSession:
    tenant: Tenant
    key_prefix: str
    csrf_token: str


def _serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        settings.secret_key.get_secret_value(),
        salt=f"scriptorium-console-{purpose}",
        signer_kwargs={"digest_method": hashlib.sha256},
    )


def _secure(request: Request, settings: Settings) -> bool:
    return settings.console.secure_cookie or request.url.scheme == "https"


def _set_cookie(
    response: Response, request: Request, settings: Settings, *, name: str, value: str, ttl: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=ttl,
        path="/console",
        httponly=True,
        samesite="lax",
        secure=_secure(request, settings),
    )


def sign_in(session: Session, key: str) -> ApiKey:
    """The key row of a valid API key (its tenant is ``.tenant``), or :class:`KeyRefused`."""
    return authenticate(session, key.strip())


def start_session(
    response: Response, request: Request, settings: Settings, tenant: Tenant, key_prefix: str
) -> None:
    token = _serializer(settings, "session").dumps(
        {"tenant": str(tenant.id), "key": key_prefix, "csrf": secrets.token_urlsafe(32)}
    )
    _set_cookie(
        response, request, settings, name=SESSION_COOKIE, value=token, ttl=settings.console.session_ttl_s
    )
    response.delete_cookie(LOGIN_COOKIE, path="/console")


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/console")


def _read(settings: Settings, purpose: str, value: str | None, max_age: int) -> Any:
    if not value:
        return None
    try:
        return _serializer(settings, purpose).loads(value, max_age=max_age)
    except BadSignature:
        return None


def current_session(request: Request, runtime: RuntimeDep, uow: UnitOfWorkDep) -> ConsoleSession:
    settings = runtime.settings
    data = _read(settings, "session", request.cookies.get(SESSION_COOKIE), settings.console.session_ttl_s)
    if not isinstance(data, dict):
        raise NotSignedIn
    try:
        tenant_id = uuid.UUID(str(data["tenant"]))
        prefix, csrf = str(data["key"]), str(data["csrf"])
    except (KeyError, ValueError) as error:
        raise NotSignedIn from error
    key = uow.session.execute(
        select(ApiKey).where(
            ApiKey.prefix == prefix,
            ApiKey.tenant_id == tenant_id,
            # the key still authenticates: not revoked, and not past a rotation's grace period
            ApiKey.revoked_at.is_(None),
            or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
        )
    ).scalar_one_or_none()
    if key is None:
        raise NotSignedIn
    tenant = key.tenant
    uow.commit()  # end the read transaction, as the API's own tenant dependency does
    within_rate_limit(request, tenant)  # the tenant's request rate, as through the API
    return ConsoleSession(tenant=tenant, key_prefix=prefix, csrf_token=csrf)


ConsoleSessionDep = Annotated[ConsoleSession, Depends(current_session)]


def _same_origin(request: Request) -> bool:
    """No Origin (older browsers) passes on the token alone; otherwise it must be this site as the
    browser reached it (the Host header) or as configured (``API__PUBLIC_URL``, behind a proxy)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    given = urlsplit(origin).netloc.lower()
    public_url: str = request.app.state.runtime.settings.api.public_url
    allowed = {request.headers.get("host", "").lower(), urlsplit(public_url).netloc.lower()}
    return bool(given) and given in allowed


def check_csrf(request: Request, submitted: str | None, expected: str) -> None:
    if not submitted or not hmac.compare_digest(submitted, expected) or not _same_origin(request):
        raise CsrfRejected


def login_token(request: Request, settings: Settings) -> str:
    """The sign-in form's CSRF token: the one in the pre-session cookie, or a new one."""
    current = _read(settings, "login", request.cookies.get(LOGIN_COOKIE), LOGIN_TTL_S)
    return current if isinstance(current, str) else secrets.token_urlsafe(32)


def remember_login_token(response: Response, request: Request, settings: Settings, token: str) -> None:
    value = _serializer(settings, "login").dumps(token)
    _set_cookie(response, request, settings, name=LOGIN_COOKIE, value=value, ttl=LOGIN_TTL_S)


def check_login_csrf(request: Request, settings: Settings, submitted: str | None) -> None:
    expected = _read(settings, "login", request.cookies.get(LOGIN_COOKIE), LOGIN_TTL_S)
    if not isinstance(expected, str):
        raise CsrfRejected
    check_csrf(request, submitted, expected)
