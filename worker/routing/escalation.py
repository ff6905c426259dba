"""Judging an OCR result: was the page under-read, and should it be read again one mode up?

Three signs of an under-read page: generation never reached EOS (the model ran to its token
limit, usually looping), the no-repeat guard had to step in, or the model wrote more text per
vision token than the policy's ``escalation_ratio`` (past ≈12× the paper's precision falls
below ≈90%). The ratio counts text only: the grounding tags around each block
(``<|ref|>label<|/ref|><|det|>[[x1, y1, x2, y2]]<|/det|>``) and EOS are taken off first.

A page is escalated to the next mode up that adds vision tokens, within the policy's ceiling
and escalation budget. At the ceiling the page keeps its best attempt, flagged ``under_read``:
it is never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scriptorium.modes import DEFAULT_MAX_CROPS, DEFAULT_MIN_CROPS, Mode, token_geometry
from scriptorium.policy import RoutingPolicy
from worker.engine.base import PageResult

# DeepSeek-V3 tokenizer counts of the grounding markup: 6 for the tags and newline plus ~1 for
# the label, and 12 per box "[[217, 209, 520, 225]]" (measured on the corpus model outputs).
BLOCK_TAG_TOKENS = 7
BOX_TOKENS = 12


@dataclass(frozen=True)
class Verdict:
    escalate: bool
    next_mode: Mode | None  # set when escalate
    reason: str
    under_read: bool  # the result shows a problem that no further attempt will fix
    output_ratio: float  # output text tokens per valid vision token


def output_text_tokens(result: PageResult) -> int:
    """Generated tokens that are page text: without grounding markup and EOS."""
    markup = sum(BLOCK_TAG_TOKENS + BOX_TOKENS * len(block.boxes) for block in result.blocks)
    return max(0, result.tokens.output - markup - (1 if result.finished else 0))


def output_ratio(result: PageResult) -> float:
    capacity = result.tokens.valid or result.tokens.vision
    return output_text_tokens(result) / capacity if capacity else 0.0


def problems(result: PageResult, policy: RoutingPolicy) -> list[str]:
    found = []
    if not result.finished:
        found.append("generation stopped before EOS")
    if result.repetition:
        found.append("the output repeats")
    ratio = output_ratio(result)
    if ratio > policy.escalation_ratio:
        found.append(f"{ratio:.1f}× text per vision token exceeds {policy.escalation_ratio:g}×")
    return found


def judge(
    result: PageResult,
    policy: RoutingPolicy,
    *,
    escalations_so_far: int = 0,
    page_size: tuple[int, int] | None = None,
    min_crops: int = DEFAULT_MIN_CROPS,
    max_crops: int = DEFAULT_MAX_CROPS,
) -> Verdict:
    """Judge one attempt. ``escalations_so_far``: attempts already made for this page before it.

    With ``page_size`` (width, height), modes that would not add vision tokens on this page are
    passed over (on a page within 640×640 gundam is no bigger than base).
    """
    ratio = round(output_ratio(result), 2)
    found = problems(result, policy)
    if not found:
        return Verdict(False, None, f"read cleanly in {result.mode} ({ratio:.1f}×)", False, ratio)
    what = "; ".join(found)
    if escalations_so_far >= policy.max_escalations:
        reason = f"under_read: {what}; escalation budget spent ({policy.max_escalations})"
        return Verdict(False, None, reason, True, ratio)
    target = _next_mode(result, policy, page_size, min_crops=min_crops, max_crops=max_crops)
    if target is None:
        reason = f"under_read: {what}; {result.mode} is the highest mode allowed"
        return Verdict(False, None, reason, True, ratio)
    return Verdict(True, target, f"{what}; escalating {result.mode} → {target}", False, ratio)


def choose_kept_result(results: Sequence[PageResult], policy: RoutingPolicy) -> tuple[PageResult, bool]:
    """The attempt a page keeps, and whether it is flagged under-read.

    A clean attempt wins; among flawed ones, finished beats unfinished, no repetition beats
    repetition, a ratio within the threshold beats one past it, and then the higher mode wins.
    """
    if not results:
        raise ValueError("a page needs at least one attempt to keep")

    def rank(result: PageResult) -> tuple[bool, bool, bool, bool, int]:
        return (
            not problems(result, policy),
            result.finished,
            not result.repetition,
            output_ratio(result) <= policy.escalation_ratio,
            result.mode.rank,
        )

    kept = max(results, key=rank)
    return kept, bool(problems(kept, policy))


def _next_mode(
    result: PageResult,
    policy: RoutingPolicy,
    page_size: tuple[int, int] | None,
    *,
    min_crops: int,
    max_crops: int,
) -> Mode | None:
    ceiling = policy.escalation_ceiling()
    current = result.tokens.valid
    candidate = result.mode.next_up()
    while candidate is not None and candidate.rank <= ceiling.rank:
        if page_size is None:
            return candidate
        width, height = page_size
        if token_geometry(candidate, width, height, min_crops=min_crops, max_crops=max_crops).valid > current:
            return candidate
        candidate = candidate.next_up()
    return None
