"""What the create routes share: document options from form fields, and the ``202 Accepted`` answer."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from api.schemas import BatchOut, DocumentOut
from scriptorium.acceptance import DocumentOptions, DocumentSpec, parse_json_object, resolve_spec
from scriptorium.db.models import Tenant
from scriptorium.idempotency import REPLAYED_HEADER
from scriptorium.settings import ModelsSettings
from scriptorium.states import Lane


def document_options(
    tenant: Tenant,
    *,
    task: str | None,
    mode: str | None,
    policy: str | None,
    pages: str | None,
    metadata: str | None,
    priority: Lane | None,
    dedup: bool,
    default_priority: Lane,
    models: ModelsSettings,
    model: str | None = None,
    password: str | None = None,
    webhook_url: str | None = None,
) -> tuple[DocumentOptions, DocumentSpec]:
    """Options of an upload (or a batch's defaults) from form fields, validated against the tenant's
    policy now, so a bad option fails the request rather than each document."""
    options = DocumentOptions.parse(
        {
            "task": task,
            "mode": mode or None,
            "policy": parse_json_object(policy, code="invalid_policy", what="policy"),
            "pages": pages or None,
            "metadata": parse_json_object(metadata, code="invalid_metadata", what="metadata"),
            "priority": priority,
            "dedup": dedup,
            "model": model or None,
        }
    )
    spec = resolve_spec(
        options,
        tenant_policy=tenant.routing_policy,
        default_priority=default_priority,
        models=models,
        tenant_model=tenant.default_model,
        password=password,
        webhook_url=webhook_url,
    )
    return options, spec


def accepted(body: DocumentOut | BatchOut, retry_after_s: int, *, replay: bool = False) -> JSONResponse:
    """202 with ``Location`` (the resource's own link) and ``Retry-After``; a replayed
    ``Idempotency-Key`` is marked with ``Idempotent-Replayed: true``."""
    headers = {"Location": body.links.self, "Retry-After": str(retry_after_s)}
    if replay:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)
