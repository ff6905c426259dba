"""Opaque keyset cursors: (created_at, id) of the last row a page showed, or a row number."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Protocol

from api.errors import ApiError


class Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


def encode_cursor(row: Keyed) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, ident = raw.partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued") from error


INT32_MAX = 2**31 - 1  # an Integer column
INT64_MAX = 2**63 - 1  # a BigInteger column


def decode_number_cursor(cursor: str, *, maximum: int) -> int:
    """A cursor that is a row number (an input's sequence, a row id), at most ``maximum`` (the
    column's range): anything else is ``invalid_cursor``, never a query the database refuses."""
    if (
        not (cursor.isascii() and cursor.isdigit())
        or len(cursor) > len(str(maximum))
        or int(cursor) > maximum
    ):
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API issued")
    return int(cursor)
