"""Recording what an engine did to claimed pages: results under their leases, and every token.

One transaction per engine batch writes the kept results, appends each engine run to the page
and to the append-only usage ledger, charges the tenant, adds to the document totals and
finishes the documents whose last page this was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from scriptorium.db.models import Document, Event, Page, UsageEntry
from scriptorium.lifecycle.claims import PageClaim, held_under
from scriptorium.lifecycle.documents import finish_document_if_done
from scriptorium.model_families import DEFAULT_MODEL_FAMILY
from scriptorium.quotas import charge_usage
from scriptorium.states import PageState
from scriptorium.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class AttemptRecord:
    """One engine run of a page, as accounted in the ledger."""

    mode: str
    vision_tokens: int
    valid_tokens: int
    placeholder_tokens: int
    prompt_tokens: int
    output_tokens: int
    engine_seconds: float
    finished: bool
    repetition: bool
    escalation: bool
    grid: list[int] | None = None
    verdict: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "grid": self.grid,
            "tokens": {
                "vision": self.vision_tokens,
                "valid": self.valid_tokens,
                "placeholders": self.placeholder_tokens,
                "prompt": self.prompt_tokens,
                "output": self.output_tokens,
            },
            "engine_seconds": round(self.engine_seconds, 4),
            "finished": self.finished,
            "repetition": self.repetition,
            "escalation": self.escalation,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class PageOutcome:
    """What an OCR task records for a page: the kept result plus every attempt it cost."""

    state: PageState  # DONE or FAILED
    attempts: Sequence[AttemptRecord]
    model_revision: str
    model: str = DEFAULT_MODEL_FAMILY.value  # the family that read the page
    mode: str | None = None
    grid: list[int] | None = None
    markdown: str | None = None
    blocks: list[Any] | None = None
    figures: list[Any] | None = None
    finished: bool | None = None
    under_read: bool = False
    compression_ratio: float | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Recorded:
    """Whether a page result was written, and the document's terminal event if it was the last."""

    written: bool
    event: Event | None = None


def record_page_outcome(uow: UnitOfWork, claim: PageClaim, outcome: PageOutcome) -> Recorded:
    """Write one page's result under its lease; see :func:`record_page_outcomes`."""
    return record_page_outcomes(uow, [(claim, outcome)])[0]


def record_page_outcomes(uow: UnitOfWork, results: Sequence[tuple[PageClaim, PageOutcome]]) -> list[Recorded]:
    """Write page results under their leases, account their tokens, and finish documents that are due.

    One transaction for a whole engine batch. A page whose lease was lost is not written (another
    worker owns it now); the others are. Rows are locked in the fleet's one order: pages, then
    the tenant's usage, then documents by id.
    """
    session = uow.session
    order = sorted(range(len(results)), key=lambda i: (results[i][0].document_id, results[i][0].page_no))
    written: dict[int, dict[str, Any]] = {}
    for index in order:
        claim, outcome = results[index]
        totals = _write_page(session, claim, outcome)
        if totals is not None:
            written[index] = totals
    charges: dict[uuid.UUID, list[int]] = {}
    for index, totals in written.items():
        claim, outcome = results[index]
        if outcome.attempts:
            charge = charges.setdefault(claim.tenant_id, [0, 0])
            charge[0] += 1
            charge[1] += totals["vision_tokens"] + totals["output_tokens"]
    for tenant_id in sorted(charges):
        pages, tokens = charges[tenant_id]
        charge_usage(session, tenant_id, pages=pages, tokens=tokens)
    by_document: dict[uuid.UUID, list[int]] = {}
    for index in written:
        by_document.setdefault(results[index][0].document_id, []).append(index)
    events: dict[uuid.UUID, Event | None] = {}
    for document_id in sorted(by_document):
        document = session.execute(
            select(Document).where(Document.id == document_id).with_for_update()
        ).scalar_one()
        for index in by_document[document_id]:
            totals = written[index]
            document.vision_tokens += totals["vision_tokens"]
            document.valid_tokens += totals["valid_tokens"]
            document.placeholder_tokens += totals["placeholder_tokens"]
            document.prompt_tokens += totals["prompt_tokens"]
            document.output_tokens += totals["output_tokens"]
            document.escalations += totals["escalations"]
            document.ocr_attempts += len(results[index][1].attempts)
            document.engine_seconds += totals["engine_seconds"]
        document.updated_at = func.now()
        events[document_id] = finish_document_if_done(uow, document)
    event_at = {indices[-1]: events[document_id] for document_id, indices in by_document.items()}
    return [Recorded(written=index in written, event=event_at.get(index)) for index in range(len(results))]


def _write_page(session: Session, claim: PageClaim, outcome: PageOutcome) -> dict[str, Any] | None:
    """The fenced page update and its ledger rows; None when the lease was lost."""
    totals = _sum_attempts(outcome.attempts)
    written = session.execute(
        update(Page)
        .where(*held_under(claim))
        .values(
            state=outcome.state,
            lease_token=None,
            lease_expires_at=None,
            mode=outcome.mode,
            grid=outcome.grid,
            markdown=outcome.markdown,
            blocks=outcome.blocks,
            figures=outcome.figures,
            finished=outcome.finished,
            under_read=outcome.under_read,
            compression_ratio=outcome.compression_ratio,
            model_revision=outcome.model_revision,
            model=outcome.model,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            ocr_attempts=Page.ocr_attempts.op("||")(cast(literal(_json_list(outcome.attempts)), JSONB)),
            vision_tokens=Page.vision_tokens + totals["vision_tokens"],
            valid_tokens=Page.valid_tokens + totals["valid_tokens"],
            placeholder_tokens=Page.placeholder_tokens + totals["placeholder_tokens"],
            prompt_tokens=Page.prompt_tokens + totals["prompt_tokens"],
            output_tokens=Page.output_tokens + totals["output_tokens"],
            escalations=Page.escalations + totals["escalations"],
            engine_seconds=Page.engine_seconds + totals["engine_seconds"],
            finished_at=func.now(),
            updated_at=func.now(),
        )
    )
    if written.rowcount == 0:  # type: ignore[attr-defined]
        return None
    if outcome.attempts:
        session.execute(
            insert(UsageEntry),
            [
                {
                    "tenant_id": claim.tenant_id,
                    "document_id": claim.document_id,
                    "page_no": claim.page_no,
                    "attempt": claim.attempt,
                    "mode": attempt.mode,
                    "vision_tokens": attempt.vision_tokens,
                    "valid_tokens": attempt.valid_tokens,
                    "placeholder_tokens": attempt.placeholder_tokens,
                    "prompt_tokens": attempt.prompt_tokens,
                    "output_tokens": attempt.output_tokens,
                    "engine_seconds": attempt.engine_seconds,
                    "escalation": attempt.escalation,
                    "model_revision": outcome.model_revision,
                    "model": outcome.model,
                }
                for attempt in outcome.attempts
            ],
        )
    return totals


def _json_list(attempts: Sequence[AttemptRecord]) -> str:
    return json.dumps([attempt.as_dict() for attempt in attempts])


def _sum_attempts(attempts: Sequence[AttemptRecord]) -> dict[str, Any]:
    return {
        "vision_tokens": sum(a.vision_tokens for a in attempts),
        "valid_tokens": sum(a.valid_tokens for a in attempts),
        "placeholder_tokens": sum(a.placeholder_tokens for a in attempts),
        "prompt_tokens": sum(a.prompt_tokens for a in attempts),
        "output_tokens": sum(a.output_tokens for a in attempts),
        "escalations": sum(a.escalation for a in attempts),
        "engine_seconds": sum(a.engine_seconds for a in attempts),
    }
