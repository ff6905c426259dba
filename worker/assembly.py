"""Writing a finished document's assembled markdown and JSON to object storage."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select, update

from scriptorium.db.models import Document, Page
from scriptorium.logging import get_logger
from scriptorium.results import assemble_json, assemble_markdown
from scriptorium.storage import result_key
from worker.runtime import WorkerRuntime

log = get_logger(__name__)


def store_document_result(runtime: WorkerRuntime, document_id: uuid.UUID) -> None:
    """Write ``document.md`` and ``document.json`` next to the tenant's raw files and link them.

    For pipelines that read results from the bucket; the API builds its answers from the page
    rows and offers these files as links once they exist. Storage outages are waited out by the
    task base.
    """
    with runtime.sessions() as session:
        document = session.get(Document, document_id)
        if document is None:
            return
        pages = list(session.execute(select(Page).where(Page.document_id == document_id)).scalars())
        markdown_key = result_key(document.tenant_id, document_id, "document.md")
        json_key = result_key(document.tenant_id, document_id, "document.json")
        runtime.store.put_bytes(markdown_key, assemble_markdown(pages).encode(), content_type="text/markdown")
        runtime.store.put_bytes(
            json_key,
            json.dumps(assemble_json(str(document_id), pages), ensure_ascii=False).encode(),
            content_type="application/json",
        )
    with runtime.units.committing() as uow:
        uow.session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(result_markdown_key=markdown_key, result_json_key=json_key)
        )
