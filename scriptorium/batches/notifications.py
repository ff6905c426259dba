"""Reading S3 bucket notifications (MinIO's webhook target, or AWS S3's event records).

MinIO posts ``{"EventName": …, "Key": …, "Records": [{"eventName": "s3:ObjectCreated:Put",
"s3": {"bucket": {"name": …}, "object": {"key": <URL-encoded>, "size": …, "eTag": …}}}]}``;
AWS S3 sends the same records with ``eventName`` ``ObjectCreated:Put``. Only object creations
count. A record without an ETag is ignored: the polling fallback will see that object, with one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from scriptorium.errors import DomainError
from scriptorium.sources import normalise_etag


class NotificationInvalid(DomainError):
    """The body is not an S3 event notification."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__("invalid_notification", message)


@dataclass(frozen=True)
class CreatedObject:
    bucket: str
    key: str
    etag: str
    size: int | None


def created_objects(payload: Any) -> list[CreatedObject]:
    if not isinstance(payload, dict):
        raise NotificationInvalid("the notification is not a JSON object")
    records = payload.get("Records", [])
    if not isinstance(records, list):
        raise NotificationInvalid('"Records" is not a list')
    found: list[CreatedObject] = []
    for record in records:
        created = _created(record)
        if created is not None:
            found.append(created)
    return found


def _created(record: Any) -> CreatedObject | None:
    if not isinstance(record, dict):
        raise NotificationInvalid("a record is not a JSON object")
    event = str(record.get("eventName", "")).removeprefix("s3:")
    if not event.startswith("ObjectCreated:"):
        return None
    try:
        bucket = str(record["s3"]["bucket"]["name"])
        obj = record["s3"]["object"]
        key = unquote_plus(str(obj["key"]))
    except (KeyError, TypeError) as error:
        raise NotificationInvalid(f"a record lacks s3.bucket.name or s3.object.key ({error})") from error
    etag = normalise_etag(obj.get("eTag") or obj.get("etag"))
    if not etag or not key:
        return None
    size = obj.get("size")
    return CreatedObject(bucket=bucket, key=key, etag=etag, size=int(size) if isinstance(size, int) else None)
