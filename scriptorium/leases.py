"""Leases: how long a claim holds a row, measured in database time, and the fence on its writes.

Every claim in the fleet (a page on an engine, a document being prepared, a batch's intake run,
a watched object being ingested, a webhook delivery being sent) is an UPDATE that sets a lease
expiry of ``now() + lease`` in Postgres' clock, never a worker's. A claim is takeable when its
row is free or its lease has expired; a write under a claim names the lease it holds, so a
worker whose lease was taken over writes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func


def interval(seconds: float) -> ColumnElement[Any]:
    """An SQL interval of ``seconds``."""
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)


def lease_until(seconds: float) -> ColumnElement[Any]:
    """The expiry of a lease taken (or extended) now for ``seconds``."""
    return func.now() + interval(seconds)


def seconds_ago(seconds: float) -> ColumnElement[Any]:
    return func.now() - interval(seconds)


def expired(expires_at: Any, *, grace_s: float = 0) -> ColumnElement[bool]:
    """A lease whose holder stopped extending it: the row may be claimed again.

    ``grace_s`` lets a lease run that much past its expiry first (the sweeper, right after a
    database outage during which no holder could extend its lease).
    """
    result: ColumnElement[bool] = expires_at < (seconds_ago(grace_s) if grace_s else func.now())
    return result
