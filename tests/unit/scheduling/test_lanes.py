import uuid

from scriptorium.messages import LANE_PRIORITY, Outbox
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.states import Lane
from tests.support.units import RecordingSink


def test_redis_serves_the_interactive_lane_first() -> None:
    # kombu's Redis transport pops lower priority numbers first.
    assert LANE_PRIORITY[Lane.INTERACTIVE] < LANE_PRIORITY[Lane.BULK]
    assert all(0 <= priority <= 9 for priority in LANE_PRIORITY.values())
    assert Lane.INTERACTIVE.rank < Lane.BULK.rank


def test_messages_carry_each_document_s_lane() -> None:
    bulk, interactive, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    outbox = Outbox()
    outbox.prepare(bulk, "req-1", Lane.BULK)
    outbox.ocr([(interactive, 1)], None, Lane.INTERACTIVE, model=DEFAULT_MODEL_FAMILY)
    sink = RecordingSink()
    sink.publish(outbox.take())
    assert sink.documents == [(bulk, "req-1")] and sink.pages == [(interactive, 1, None)]
    assert sink.lane_of(bulk) is Lane.BULK
    assert sink.lane_of(interactive) is Lane.INTERACTIVE
    assert sink.lane_of(unknown) is Lane.INTERACTIVE
    assert not outbox.messages
