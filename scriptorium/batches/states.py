"""States of batches, their inputs and watched objects, and the reason codes of intake."""

from __future__ import annotations

from enum import StrEnum

from scriptorium.errors import DomainError


class BatchKind(StrEnum):
    UPLOADS = "uploads"  # the client uploads files into it one by one (the CLI), then closes it
    ARCHIVE = "archive"  # an uploaded zip or tar(.gz|.bz2|.xz), unpacked by a worker
    PREFIX = "prefix"  # every object under a bucket prefix of a named source
    MANIFEST = "manifest"  # a JSONL list of object URIs with per-document options


class BatchState(StrEnum):
    OPEN = "open"  # accepting client uploads until closed
    EXPANDING = "expanding"  # a worker is discovering inputs and turning them into documents
    RUNNING = "running"  # every input is known and ingested; documents are being processed
    CANCELLING = "cancelling"  # cancel requested; unfinished documents are being cancelled
    COMPLETED = "completed"  # every input is final (done, failed, rejected, skipped, duplicate…)
    FAILED = "failed"  # intake refused as a whole (unsafe archive, unreadable manifest, no source)
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (BatchState.COMPLETED, BatchState.FAILED, BatchState.CANCELLED)


TERMINAL_BATCH_VALUES = tuple(s.value for s in BatchState if s.is_terminal)


class ItemState(StrEnum):
    PENDING = "pending"  # discovered, no document yet
    INGESTED = "ingested"  # its document exists (the item follows the document from here on)
    REJECTED = "rejected"  # cannot become a document (missing object, invalid manifest line…)
    SKIPPED = "skipped"  # not an input (a symlink, a device) — reported, never read
    CANCELLED = "cancelled"  # the batch was cancelled before it was ingested


class ItemOutcome(StrEnum):
    """How an input ended, as the reconciliation report states it."""

    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # an earlier identical document's result was reused
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    PENDING = "pending"  # not ingested yet
    IN_PROGRESS = "in_progress"  # its document is not final yet

    @property
    def is_final(self) -> bool:
        return self not in (ItemOutcome.PENDING, ItemOutcome.IN_PROGRESS)


class WatchObjectState(StrEnum):
    PENDING = "pending"
    INGESTING = "ingesting"  # claimed by one intake run until ``lease_expires_at``
    INGESTED = "ingested"
    REJECTED = "rejected"


class IntakeReason(StrEnum):
    """Machine-readable reasons intake refuses a batch or an input."""

    ARCHIVE_UNSUPPORTED = "archive_unsupported"  # not a zip or tar archive
    ARCHIVE_CORRUPT = "archive_corrupt"
    ARCHIVE_UNSAFE_PATH = "archive_unsafe_path"  # an absolute name or one escaping with ..
    ARCHIVE_TOO_LARGE = "archive_too_large"  # unpacks to more than the expanded-bytes limit
    ARCHIVE_TOO_MANY_ENTRIES = "archive_too_many_entries"
    ARCHIVE_COMPRESSION_RATIO = "archive_compression_ratio"  # a zip bomb
    ARCHIVE_TOO_DEEP = "archive_too_deep"  # archives nested deeper than allowed
    ARCHIVE_EMPTY = "archive_empty"
    NOT_A_REGULAR_FILE = "not_a_regular_file"  # symlink, hard link, device or fifo: skipped
    ENCRYPTED_ENTRY = "encrypted_entry"
    INVALID_MANIFEST = "invalid_manifest"
    INVALID_MANIFEST_LINE = "invalid_manifest_line"
    INVALID_OPTIONS = "invalid_options"
    INVALID_OBJECT_KEY = "invalid_object_key"  # NUL/control characters, ., .. or empty segments, too long
    UNKNOWN_SOURCE = "unknown_source"
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    SOURCE_BUCKET_MISSING = "source_bucket_missing"
    SOURCE_OBJECT_MISSING = "source_object_missing"
    SOURCE_ACCESS_DENIED = "source_access_denied"
    SOURCE_UNAVAILABLE = "source_unavailable"
    TOO_LARGE = "too_large"
    INTAKE_EXHAUSTED = "intake_exhausted"  # the intake run crashed or timed out repeatedly
    CANCELLED = "cancelled"


class IntakeRefused(DomainError):
    """An input or a whole batch that cannot be ingested as sent; permanent."""

    def __init__(self, reason: IntakeReason, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
