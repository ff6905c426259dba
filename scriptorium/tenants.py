"""Tenants. Their API keys are in scriptorium/api_keys.py."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from scriptorium.api_keys import IssuedKey, issue_api_key
from scriptorium.db.models import Tenant


def create_tenant(session: Session, name: str) -> IssuedKey:
    """Create a tenant and its first API key."""
    if session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none() is not None:
        raise ValueError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    session.add(tenant)
    session.flush()
    return issue_api_key(session, tenant)
