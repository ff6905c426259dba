"""Tenants and their default model. Their API keys are in scriptorium/api_keys.py."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from scriptorium.api_keys import IssuedKey, issue_api_key
from scriptorium.db.models import Tenant
from scriptorium.model_choice import checked_model
from scriptorium.model_families import ModelFamily
from scriptorium.settings import ModelsSettings


def create_tenant(
    session: Session, name: str, *, default_model: str | None = None, models: ModelsSettings | None = None
) -> IssuedKey:
    """Create a tenant (with its default model, checked against ``models``) and its first API key."""
    if session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none() is not None:
        raise ValueError(f"tenant {name!r} already exists")
    tenant = Tenant(name=name)
    if default_model is not None:
        set_default_model(tenant, default_model, models or ModelsSettings())
    session.add(tenant)
    session.flush()
    return issue_api_key(session, tenant)


def set_default_model(tenant: Tenant, model: str | None, models: ModelsSettings) -> None:
    """The family the tenant's documents are read with when they name none; None: the fleet's
    default. A model this fleet does not serve is refused (ModelRejected), as at upload."""
    tenant.default_model = None if model is None else checked_model(model, models).value


def effective_default_model(tenant: Tenant, models: ModelsSettings) -> ModelFamily:
    """What a document of this tenant that names no model (nor its batch or watch) is read with."""
    return ModelFamily(tenant.default_model) if tenant.default_model else models.default
