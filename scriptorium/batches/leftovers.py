"""What a failed or cancelled batch leaves in storage that nothing will read again, and its removal.

Intake stores an input's bytes at its first document's raw key (:func:`input_key`) before the
document exists: archive entries are staged there when the archive is unpacked, source objects
are copied there just before their document commits. When the batch fails or is cancelled,
inputs that never became a document keep such bytes with nothing pointing at them, and the
batch's own uploads (its archive or manifest, under ``{tenant}/batches/{batch}/``) are no longer
needed: no retry exists for a failed or cancelled batch. Documents keep their bytes.

Removal is best effort and repeatable (deleting a missing key is no error): a storage outage
leaves a warning in the log, and a later call removes the rest.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from scriptorium.batches.expansion import input_key
from scriptorium.batches.states import BatchState
from scriptorium.db.models import Batch, BatchItem
from scriptorium.logging import get_logger
from scriptorium.storage import ObjectStore, StorageUnavailable

log = get_logger(__name__)
_ABANDONED = (BatchState.FAILED, BatchState.CANCELLED, BatchState.CANCELLING)
DELETE_CHUNK = 1000  # keys per bulk delete request


def unreferenced_input_keys(session: Session, batch: Batch) -> list[str]:
    """Storage keys of the batch's inputs that have no document (nor had one), in input order."""
    seqs = session.execute(
        select(BatchItem.seq)
        .where(BatchItem.batch_id == batch.id, BatchItem.document_id.is_(None))
        .order_by(BatchItem.seq)
    ).scalars()
    return [input_key(batch, seq) for seq in seqs]


def discard_leftovers(session: Session, store: ObjectStore, batch_id: uuid.UUID) -> int:
    """Delete what a failed or cancelled batch leaves behind; returns how many keys were asked to
    go (0 for a batch in any other state). Call it after the batch's new state was committed;
    ``session`` is only read from."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is None or batch.state not in _ABANDONED:
        return 0
    keys = [*unreferenced_input_keys(session, batch), *_uploads(batch)]
    try:
        for start in range(0, len(keys), DELETE_CHUNK):
            store.delete_keys(keys[start : start + DELETE_CHUNK])
    except StorageUnavailable as error:
        log.warning("batch.leftovers_kept", batch_id=str(batch_id), keys=len(keys), error=str(error))
        return 0
    if keys:
        log.info("batch.leftovers_deleted", batch_id=str(batch_id), keys=len(keys))
    return len(keys)


def _uploads(batch: Batch) -> list[str]:
    """The batch's own upload (its archive or manifest), stored under ``{tenant}/batches/{batch}/``."""
    key = (batch.source or {}).get("key")
    return [str(key)] if key else []
