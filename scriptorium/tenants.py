"""Tenants and their API keys. Keys are shown once; only a SHA-256 of each is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from scriptorium.db.models import ApiKey, Tenant

KEY_PREFIX = "sk"


@dataclass(frozen=True)
class IssuedKey:
    tenant: Tenant
    key: str  # the full key; never stored


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_api_key(session: Session, tenant: Tenant) -> IssuedKey:
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant_id=tenant.id, prefix=prefix, key_hash=_hash(key)))
    session.flush()
    return IssuedKey(tenant=tenant, key=key)


def create_tenant(session: Session, name: str) -> IssuedKey:
    """Create a tenant and its first API key."""
    if session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none() is not None:
        raise ValueError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return issue_api_key(session, tenant)


def authenticate(session: Session, key: str) -> Tenant | None:
    """The tenant owning ``key``, or None for an unknown, malformed or revoked key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    row = session.execute(
        select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return row.tenant
