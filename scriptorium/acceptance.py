"""Accepting a document: options resolved, bytes in storage, the row committed, then ``prepare``.

One path for every way a document arrives: a single upload, a file uploaded into a batch, an
archive entry, an object copied from a named source for a batch or a watched prefix. Each one
is fingerprinted and, unless dedup is off, may reuse an earlier identical document's result
(see :mod:`scriptorium.dedup`); an Idempotency-Key that was used before answers with the earlier
document. The caller's unit of work commits the row before the message is sent; a lost message is
re-sent by the sweeper.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from scriptorium.db.models import Document
from scriptorium.dedup import find_original, fingerprint
from scriptorium.dispatch import send_prepare
from scriptorium.errors import DomainError
from scriptorium.idempotency import check_key, insert_or_replay
from scriptorium.lifecycle.documents import admit_duplicate
from scriptorium.model_choice import resolve_model
from scriptorium.model_families import MODEL_FAMILY_NAMES
from scriptorium.page_ranges import parse_page_selection
from scriptorium.policy import RoutingPolicy
from scriptorium.settings import ModelsSettings, Settings
from scriptorium.states import DocumentState, Lane
from scriptorium.storage import ObjectStore, StoredObject, raw_key
from scriptorium.unit_of_work import UnitOfWork

DocumentTask = Literal["markdown", "free_ocr", "figure"]
MAX_METADATA_BYTES = 16 * 1024
BeforeCommit = Callable[[Session, Document], None]


class OptionsRejected(DomainError):
    """Document options that cannot be used; ``code`` is the API's error code."""


class DocumentOptions(BaseModel):
    """What a client may ask of a document; unset fields fall back to the batch, then the tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: DocumentTask | None = None
    mode: str | None = None  # "auto" or a fixed mode
    policy: dict[str, Any] | None = None  # routing policy fields (target_ratio, max_mode, …)
    pages: str | None = None  # e.g. "1-3,5"
    metadata: dict[str, Any] | None = None
    priority: Lane | None = None
    dedup: bool | None = None  # reuse an earlier identical document's result (default true)
    model: str | None = Field(
        default=None,
        max_length=64,
        description=f"the model family that reads the document: {', '.join(MODEL_FAMILY_NAMES)} "
        "(default: the tenant's default, then the fleet's)",
    )

    def over(self, defaults: DocumentOptions) -> DocumentOptions:
        """These options on top of ``defaults``: set fields win; policy and metadata merge by key."""
        merged = {**defaults.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)}
        if defaults.policy and self.policy:
            merged["policy"] = {**defaults.policy, **self.policy}
        if defaults.metadata and self.metadata:
            merged["metadata"] = {**defaults.metadata, **self.metadata}
        return DocumentOptions.model_validate(merged)

    @classmethod
    def parse(cls, raw: Any) -> DocumentOptions:
        """Options from untrusted JSON data; OptionsRejected (invalid_options) when malformed."""
        try:
            return cls.model_validate(raw)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or "options"
            raise OptionsRejected("invalid_options", f"{where}: {first.get('msg', 'invalid')}") from error


@dataclass(frozen=True)
class DocumentSpec:
    """Resolved, validated options of one document."""

    task: str
    routing_policy: dict[str, Any]
    page_selection: str | None
    metadata: dict[str, Any]
    priority: Lane
    model: str
    dedup: bool = True
    password: str | None = None
    webhook_url: str | None = None


def parse_json_object(text: str | None, *, code: str, what: str) -> dict[str, Any] | None:
    """A JSON object from a form field; OptionsRejected(code) otherwise. Empty text is None."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise OptionsRejected(code, f"{what} is not valid JSON: {error.msg}") from error
    if not isinstance(value, dict):
        raise OptionsRejected(code, f"{what} must be a JSON object")
    return value


def resolve_policy(tenant_policy: dict[str, Any] | None, options: DocumentOptions) -> RoutingPolicy:
    fields: dict[str, Any] = {**(tenant_policy or {}), **(options.policy or {})}
    if options.mode:
        fields["mode"] = options.mode
    try:
        return RoutingPolicy.model_validate(fields)
    except ValidationError as error:
        raise OptionsRejected("invalid_policy", str(error.errors()[0]["msg"])) from error


def resolve_spec(
    options: DocumentOptions,
    *,
    tenant_policy: dict[str, Any] | None,
    default_priority: Lane,
    models: ModelsSettings,
    tenant_model: str | None = None,
    password: str | None = None,
    webhook_url: str | None = None,
) -> DocumentSpec:
    """Validate options into a spec; raises OptionsRejected, ModelRejected for a model this fleet
    cannot read with, or InputRejected for a bad page selection."""
    if options.pages:
        parse_page_selection(options.pages)
    metadata = options.metadata or {}
    if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
        raise OptionsRejected("invalid_metadata", f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    return DocumentSpec(
        task=options.task or "markdown",
        routing_policy=resolve_policy(tenant_policy, options).model_dump(mode="json"),
        page_selection=options.pages or None,
        metadata=metadata,
        priority=options.priority or default_priority,
        model=resolve_model(models, options.model, tenant_model).value,
        dedup=options.dedup is not False,
        password=password or None,
        webhook_url=webhook_url,
    )


@dataclass(frozen=True)
class Accepted:
    document: Document
    replayed: bool  # an Idempotency-Key matched an earlier document, returned instead


@dataclass(frozen=True)
class Dedup:
    """How documents are fingerprinted, and whether this one may reuse an earlier result."""

    enabled: bool
    dpi: int
    min_crops: int
    max_crops: int

    @classmethod
    def from_settings(cls, settings: Settings, *, enabled: bool = True) -> Dedup:
        return cls(
            enabled=enabled,
            dpi=settings.prepare.dpi,
            min_crops=settings.engine.min_crops,
            max_crops=settings.engine.max_crops,
        )

    def fingerprint_of(self, document: Document) -> str | None:
        """None for a password-protected PDF: the password decides its result and is not kept."""
        if document.pdf_password:
            return None
        return fingerprint(
            sha256=document.sha256,
            model=document.model,
            task=document.task,
            page_selection=document.page_selection,
            routing_policy=document.routing_policy,
            dpi=self.dpi,
            min_crops=self.min_crops,
            max_crops=self.max_crops,
        )


def new_document(
    *,
    document_id: uuid.UUID,
    tenant_id: uuid.UUID,
    stored: StoredObject,
    spec: DocumentSpec,
    filename: str | None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    batch_id: uuid.UUID | None = None,
) -> Document:
    return Document(
        id=document_id,
        tenant_id=tenant_id,
        state=DocumentState.RECEIVED,
        idempotency_key=idempotency_key,
        filename=filename[:1024] if filename else None,
        size_bytes=stored.size,
        sha256=stored.sha256,
        raw_key=stored.key,
        page_selection=spec.page_selection,
        task=spec.task,
        routing_policy=spec.routing_policy,
        client_metadata=spec.metadata,
        pdf_password=spec.password,
        request_id=request_id,
        webhook_url=spec.webhook_url,
        priority=spec.priority,
        model=spec.model,
        batch_id=batch_id,
    )


def accept_document(
    uow: UnitOfWork,
    document: Document,
    *,
    dedup: Dedup,
    before_commit: BeforeCommit | None = None,
    undo: Callable[[], None] | None = None,
) -> Accepted:
    """Add a new document (with what ``before_commit`` adds in the same transaction) and register
    ``prepare`` unless it reuses an earlier result. A clash on the tenant's Idempotency-Key undoes
    the insert, calls ``undo`` and returns the earlier document instead. The caller commits."""
    session = uow.session
    document.dedup_fingerprint = dedup.fingerprint_of(document)
    original = (
        find_original(session, document.tenant_id, document.dedup_fingerprint, model=document.model)
        if dedup.enabled and document.dedup_fingerprint
        else None
    )

    def stage() -> None:
        if original is not None:
            admit_duplicate(uow, document, original)
        if before_commit is not None:
            before_commit(session, document)

    answered, replayed = insert_or_replay(session, document, stage=stage, undo=undo)
    if replayed:
        return Accepted(answered, replayed=True)
    if document.duplicate_of is None:
        send_prepare(uow, document)
    return Accepted(document, replayed=False)


def intake_stream(
    uow: UnitOfWork,
    store: ObjectStore,
    stream: IO[bytes],
    *,
    limit: int,
    tenant_id: uuid.UUID,
    spec: DocumentSpec,
    filename: str | None,
    dedup: Dedup,
    document_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    batch_id: uuid.UUID | None = None,
    before_commit: BeforeCommit | None = None,
) -> Accepted:
    """Stream ``stream`` to storage (hashing it, never holding it whole), then accept the document.

    Raises InvalidIdempotencyKey for a blank key, and UploadTooLarge or StorageUnavailable from
    storage.
    """
    check_key(idempotency_key)
    document_id = document_id or uuid.uuid4()
    stored = store.put_stream(raw_key(tenant_id, document_id), stream, limit=limit)
    document = new_document(
        document_id=document_id,
        tenant_id=tenant_id,
        stored=stored,
        spec=spec,
        filename=filename,
        idempotency_key=idempotency_key,
        request_id=request_id,
        batch_id=batch_id,
    )
    return accept_document(
        uow,
        document,
        dedup=dedup,
        before_commit=before_commit,
        undo=lambda: store.delete(stored.key),
    )
