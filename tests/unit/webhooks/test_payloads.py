import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

from scriptorium.webhooks.payloads import message_id, render_body


def _payload(document_id: uuid.UUID) -> dict[str, object]:
    return {
        "document_id": str(document_id),
        "state": "completed",
        "pages": {"done": 2},
        "tokens": {"vision": 512, "output": 90},
        "metadata": {"ref": "é"},
    }


def test_the_body_is_a_thin_envelope_with_links() -> None:
    document_id = uuid.uuid4()
    occurred = datetime(2026, 11, 29, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    body = render_body(
        event_type="document.completed",
        occurred_at=occurred,
        payload=_payload(document_id),
        public_url="https://ocr.example.com/",
    )
    envelope = json.loads(body)
    assert envelope["type"] == "document.completed"
    assert envelope["timestamp"] == "2026-11-29T12:00:00Z"
    assert envelope["data"]["pages"] == {"done": 2}
    assert envelope["data"]["links"] == {
        "self": f"https://ocr.example.com/v1/documents/{document_id}",
        "result_markdown": f"https://ocr.example.com/v1/documents/{document_id}/result?format=markdown",
        "result_json": f"https://ocr.example.com/v1/documents/{document_id}/result?format=json",
    }


def test_the_body_is_byte_identical_every_time() -> None:
    document_id = uuid.uuid4()
    payload = _payload(document_id)
    reordered = dict(reversed(list(payload.items())))
    when = datetime(2026, 11, 29, tzinfo=UTC)
    first = render_body(
        event_type="document.failed", occurred_at=when, payload=payload, public_url="http://a"
    )
    second = render_body(
        event_type="document.failed", occurred_at=when, payload=reordered, public_url="http://a"
    )
    assert first == second
    assert "é".encode() in first


def test_the_message_id_is_derived_from_the_event() -> None:
    event_id = uuid.uuid4()
    assert message_id(event_id) == f"msg_{event_id.hex}" == message_id(uuid.UUID(str(event_id)))
