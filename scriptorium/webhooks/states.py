"""States of a webhook delivery and the event types clients may subscribe to."""

from __future__ import annotations

from enum import StrEnum

from scriptorium.states import EventType


class DeliveryState(StrEnum):
    PENDING = "pending"  # not attempted yet, or replayed
    RETRYING = "retrying"  # failed at least once; next_attempt_at says when to try again
    DELIVERED = "delivered"
    DEAD = "dead"  # schedule exhausted, endpoint gone or disabled

    @property
    def is_final(self) -> bool:
        return self in (DeliveryState.DELIVERED, DeliveryState.DEAD)


DUE_STATES = (DeliveryState.PENDING, DeliveryState.RETRYING)
SUBSCRIBABLE_EVENTS = tuple(event.value for event in EventType)
