"""API keys: issue, list, revoke, rotate, authenticate.

A key is ``sk_<prefix>_<secret>``; it is shown once and only its SHA-256 is stored, the prefix
finds the row. A revoked key stops at once. A rotated key gets an expiry (now + the grace
period, in database time) and keeps working until then, so clients can switch without an
outage; a key in its grace period cannot rotate again, so a leaked old key cannot mint new ones.
These functions flush; the caller commits.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scriptorium.db.models import ApiKey, Tenant
from scriptorium.errors import DomainError

KEY_PREFIX = "sk"
# last_used_at is written at most this often per key, so authentication is not a write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRING = "expiring"  # rotated: valid until expires_at
    EXPIRED = "expired"
    REVOKED = "revoked"


class ApiKeyError(DomainError):
    """A key operation that cannot be done; each kind has its own reason code and status."""

    status = 400
    reason = "api_key_error"

    def __init__(self, message: str) -> None:
        super().__init__(self.reason, message)


class TenantNotFound(ApiKeyError):
    status, reason = 404, "tenant_not_found"


class ApiKeyNotFound(ApiKeyError):
    status, reason = 404, "api_key_not_found"


class ApiKeyAlreadyRotated(ApiKeyError):
    status, reason = 409, "api_key_already_rotated"


class ApiKeyInactive(ApiKeyError):
    status, reason = 409, "api_key_inactive"


class KeyRefused(DomainError):
    """Authentication failed; the code says why only to a caller that holds the real key."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, headers={"WWW-Authenticate": "Bearer"})


UNKNOWN = ("unauthorized", "the API key is unknown")


@dataclass(frozen=True)
class IssuedKey:
    tenant: Tenant
    key: str  # the full key; never stored
    key_id: uuid.UUID


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but the secret."""

    id: uuid.UUID
    tenant: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    state: KeyState

    def as_dict(self) -> dict[str, str | None]:
        def moment(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": str(self.id),
            "tenant": self.tenant,
            "prefix": self.prefix,
            "state": self.state.value,
            "created_at": moment(self.created_at),
            "last_used_at": moment(self.last_used_at),
            "expires_at": moment(self.expires_at),
            "revoked_at": moment(self.revoked_at),
        }


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _database_now(session: Session) -> datetime:
    now: datetime = session.execute(select(func.now())).scalar_one()
    return now


def _state(row: ApiKey, now: datetime) -> KeyState:
    if row.revoked_at is not None:
        return KeyState.REVOKED
    if row.expires_at is None:
        return KeyState.ACTIVE
    return KeyState.EXPIRING if row.expires_at > now else KeyState.EXPIRED


def _info(row: ApiKey, now: datetime) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        tenant=row.tenant.name,
        prefix=row.prefix,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        state=_state(row, now),
    )


def issue_api_key(session: Session, tenant: Tenant) -> IssuedKey:
    """A new key for ``tenant``; the returned ``key`` is the only copy of the secret."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=_hash(key))
    session.add(row)
    session.flush()
    return IssuedKey(tenant=tenant, key=key, key_id=row.id)


def tenant_named(session: Session, name: str) -> Tenant:
    tenant = session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
    if tenant is None:
        raise TenantNotFound(f"no tenant {name!r}")
    return tenant


def create_key(session: Session, tenant_name: str) -> IssuedKey:
    """Another key for an existing tenant; its other keys stay valid."""
    return issue_api_key(session, tenant_named(session, tenant_name))


def list_keys(session: Session, tenant_name: str) -> list[KeyInfo]:
    """Every key of the tenant, oldest first, revoked and expired ones included."""
    tenant = tenant_named(session, tenant_name)
    now = _database_now(session)
    rows = session.execute(
        select(ApiKey).where(ApiKey.tenant_id == tenant.id).order_by(ApiKey.created_at, ApiKey.id)
    ).scalars()
    return [_info(row, now) for row in rows]


def _key_row(session: Session, key_id: uuid.UUID) -> ApiKey:
    row = session.get(ApiKey, key_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise ApiKeyNotFound(f"no API key {key_id}")
    return row


def revoke_key(session: Session, key_id: uuid.UUID) -> KeyInfo:
    """Stop the key at once. Revoking a revoked key changes nothing."""
    row = _key_row(session, key_id)
    now = _database_now(session)
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return _info(row, now)


def rotate_key(session: Session, key_id: uuid.UUID, *, grace: timedelta) -> IssuedKey:
    """A new key for the same tenant; the old one keeps working for ``grace``, then expires."""
    row = _key_row(session, key_id)
    now = _database_now(session)
    state = _state(row, now)
    if state in (KeyState.REVOKED, KeyState.EXPIRED):
        raise ApiKeyInactive(f"API key {key_id} is {state.value} and cannot be rotated")
    if state is KeyState.EXPIRING:
        expires_at = row.expires_at.astimezone(UTC).isoformat() if row.expires_at else ""
        raise ApiKeyAlreadyRotated(
            f"API key {key_id} was already rotated and stops working at {expires_at}; "
            "use the key the rotation returned"
        )
    row.expires_at = now + grace
    return issue_api_key(session, row.tenant)


def authenticate(session: Session, key: str) -> ApiKey:
    """The key row for ``key`` (its tenant is ``.tenant``), or :class:`KeyRefused`.

    Unknown and malformed keys are refused alike; a revoked or expired key is named as such,
    since only the holder of the real secret gets that far. Notes when the key was last used.
    """
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise KeyRefused(*UNKNOWN)
    found = session.execute(select(ApiKey, func.now()).where(ApiKey.prefix == parts[1])).one_or_none()
    if found is None:
        raise KeyRefused(*UNKNOWN)
    row, now = found
    if not hmac.compare_digest(row.key_hash, _hash(key)):
        raise KeyRefused(*UNKNOWN)
    state = _state(row, now)
    if state is KeyState.REVOKED:
        raise KeyRefused("api_key_revoked", "the API key was revoked")
    if state is KeyState.EXPIRED:
        raise KeyRefused("api_key_expired", "the API key was rotated and its grace period is over")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        row.last_used_at = now
        session.flush()
    return row
