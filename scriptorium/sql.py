"""Raw SQL the ORM cannot express well (fair share, admission): states bound as parameters, and the
fragments several statements share.

No state value is spelled inside a statement: each is a bind parameter named after its enum
(``:page_queued``, ``:document_processing``, ``:lane_interactive``, ``:reason_concurrency_limit``)
and :func:`params` fills in the ones a statement uses.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import TextClause

from scriptorium.states import DocumentState, Lane, PageState

_ENUM_PARAMS: dict[str, StrEnum] = {
    **{f"page_{state.value}": state for state in PageState},
    **{f"document_{state.value}": state for state in DocumentState},
    **{f"lane_{lane.value}": lane for lane in Lane},
}

# A page message presumed still in the broker: queued, and sent less than ``lost_after_s`` ago.
LIVE_PAGE_MESSAGE = (
    "(p.state = :page_queued AND p.dispatched_at >= now() - make_interval(secs => :lost_after_s))"
)
# A queued page to send (again): never sent, or its message presumed lost: sent more than
# ``lost_after_s`` ago, and before a worker of its family was last heard from (``family_seen_at``,
# NULL when none ever was), so a message nobody was there to consume is not sent again and again.
PAGE_MESSAGE_DUE = (
    "(p.dispatched_at IS NULL OR p.dispatched_at < least(now() - make_interval(secs => :lost_after_s), "
    "coalesce(CAST(:family_seen_at AS timestamptz), '-infinity'::timestamptz)))"
)
# The router's prediction of a page's output length (0 for pages routed without one).
PREDICTED_TOKENS = "coalesce((p.routing->>'predicted_text_tokens')::int, 0)"


def register(prefix: str, values: type[StrEnum]) -> None:
    """Make another enum's values bindable as ``:<prefix>_<value>``."""
    _ENUM_PARAMS.update({f"{prefix}_{member.value}": member for member in values})


def params(statement: TextClause, **values: Any) -> dict[str, Any]:
    """The bind parameters of ``statement``: the enum values it names, plus ``values``."""
    names = statement._bindparams
    bound = {name: _ENUM_PARAMS[name].value for name in names if name in _ENUM_PARAMS}
    return {**bound, **values}
