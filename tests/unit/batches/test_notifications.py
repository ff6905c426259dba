"""S3 bucket notifications as MinIO and AWS send them."""

from __future__ import annotations

from typing import Any

import pytest

from scriptorium.batches.notifications import CreatedObject, NotificationInvalid, created_objects


def _record(event: str, key: str, etag: str | None = "abc123", bucket: str = "scans") -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "size": 42}
    if etag is not None:
        obj["eTag"] = etag
    return {"eventName": event, "s3": {"bucket": {"name": bucket}, "object": obj}}


def test_minio_records_of_created_objects_are_read_with_decoded_keys() -> None:
    payload = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "scans/in/a b.pdf",
        "Records": [
            _record("s3:ObjectCreated:Put", "in/a+b%C3%A9.pdf", '"abc123"'),
            _record("s3:ObjectCreated:CompleteMultipartUpload", "in/big.pdf", "ffff-3"),
            _record("s3:ObjectRemoved:Delete", "in/gone.pdf"),
        ],
    }
    assert created_objects(payload) == [
        CreatedObject(bucket="scans", key="in/a bé.pdf", etag="abc123", size=42),
        CreatedObject(bucket="scans", key="in/big.pdf", etag="ffff-3", size=42),
    ]


def test_aws_event_names_without_the_s3_prefix_count_too() -> None:
    assert [o.key for o in created_objects({"Records": [_record("ObjectCreated:Copy", "x.png")]})] == [
        "x.png"
    ]


def test_a_record_without_an_etag_is_left_to_polling() -> None:
    assert created_objects({"Records": [_record("s3:ObjectCreated:Put", "x.png", etag=None)]}) == []


def test_a_test_event_without_records_is_accepted_and_empty() -> None:
    assert created_objects({"Event": "s3:TestEvent"}) == []


@pytest.mark.parametrize(
    "payload", [[], {"Records": "x"}, {"Records": [{"eventName": "s3:ObjectCreated:Put"}]}]
)
def test_what_is_not_a_notification_is_invalid(payload: Any) -> None:
    with pytest.raises(NotificationInvalid):
        created_objects(payload)
