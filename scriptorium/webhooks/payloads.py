"""The bytes a receiver gets: a thin JSON envelope around the event's payload, plus API links.

Batch events (``batch.*``) carry a batch's payload and links instead of a document's.
The body is rebuilt from the immutable event row on every attempt and serialised canonically,
so every attempt and replay of a delivery sends (and signs) identical bytes.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def message_id(event_id: uuid.UUID) -> str:
    """The ``webhook-id`` of an event: receivers use it to drop duplicates."""
    return f"msg_{event_id.hex}"


def document_links(public_url: str, document_id: str) -> dict[str, str]:
    document = f"{public_url.rstrip('/')}/v1/documents/{document_id}"
    return {
        "self": document,
        "result_markdown": f"{document}/result?format=markdown",
        "result_json": f"{document}/result?format=json",
    }


def batch_links(public_url: str, batch_id: str) -> dict[str, str]:
    batch = f"{public_url.rstrip('/')}/v1/batches/{batch_id}"
    return {
        "self": batch,
        "documents": f"{batch}/documents",
        "report_json": f"{batch}/report?format=json",
        "report_csv": f"{batch}/report?format=csv",
    }


def render_body(*, event_type: str, occurred_at: datetime, payload: dict[str, Any], public_url: str) -> bytes:
    links = (
        document_links(public_url, str(payload["document_id"]))
        if "document_id" in payload
        else batch_links(public_url, str(payload["batch_id"]))
    )
    data = {**payload, "links": links}
    envelope = {
        "type": event_type,
        "timestamp": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
