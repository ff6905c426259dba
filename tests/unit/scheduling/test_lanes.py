import uuid

from scriptorium.lifecycle import DispatchPlan
from scriptorium.queueing import LANE_PRIORITY
from scriptorium.states import Lane


def test_redis_serves_the_interactive_lane_first() -> None:
    # kombu's Redis transport pops lower priority numbers first.
    assert LANE_PRIORITY[Lane.INTERACTIVE] < LANE_PRIORITY[Lane.BULK]
    assert all(0 <= priority <= 9 for priority in LANE_PRIORITY.values())
    assert Lane.INTERACTIVE.rank < Lane.BULK.rank


def test_plans_carry_each_document_s_lane_through_a_merge() -> None:
    bulk, interactive, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    plan = DispatchPlan()
    plan.add_document(bulk, "req-1", Lane.BULK)
    other = DispatchPlan(pages=[(interactive, 1, None)], lanes={interactive: Lane.INTERACTIVE})
    plan.merge(other)
    assert plan.documents == [(bulk, "req-1")] and plan.pages == [(interactive, 1, None)]
    assert plan.lane_of(bulk) is Lane.BULK
    assert plan.lane_of(interactive) is Lane.INTERACTIVE
    assert plan.lane_of(unknown) is Lane.INTERACTIVE
    assert plan
    assert not DispatchPlan()
