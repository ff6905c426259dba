"""Decode steps wasted on finished rows: engine batches in claim order (FIFO) against length-aware
batches (:mod:`scriptorium.batching`), on the labelled pages.

    .venv/bin/python -m bench.batching [--gt-tokenizer DIR] [--backlog 2000] [--seeds 5] [--window 4]

Every page of ``pages-labelled/labels.csv`` is rendered and routed exactly as the fleet does it
(:func:`bench.routing_eval.evaluate`): its routed mode and predicted text tokens are what a claim
would read from the page's routing JSON. Its true output length is its ground-truth token count:
the labels' ``est_text_tokens``, or with ``--gt-tokenizer`` the ground-truth text counted with that
DeepSeek tokenizer. Blank (skipped) pages and pages without ground truth do not take part.

A generate call decodes until its longest row ends, so a batch wastes Σ (longest − length) row
steps and takes ``longest`` decode steps. Batches are formed per mode (an engine batch holds one
mode), from the predictions; waste and steps are counted with the true lengths. Three ways:
FIFO (claim order cut every B pages), length-aware (grouped by prediction), and an oracle
(length-aware grouping on the true lengths: the most grouping could save).

1. The labelled pages, each once, one bulk tenant, in ``labels.csv`` order.
2. A backlog of ``--backlog`` pages drawn from them with replacement (a smoothed bootstrap: each
   draw's true and predicted lengths are scaled by one shared factor e^N(0, 0.3²), so the drawn
   lengths spread like real ones instead of repeating 30 values, and each page keeps its own
   prediction error), spread over six tenants of unequal size, 10% interactive, averaged over
   ``--seeds`` seeds.

Lateness, per page: how many batches later than in FIFO it is served within its mode ("later":
the share of pages served later at all; "late max": the most batches any page waited extra).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.routing_eval import SKIP, evaluate
from scriptorium.batching import DEFAULT_WINDOW_BATCHES, claim_order, plan_batches, wasted_steps
from scriptorium.policy import RoutingPolicy
from scriptorium.states import Lane
from tests.support.corpus import corpus_path
from worker.engine.tokenizer_counter import TokenizerCounter
from worker.routing.tokens import token_counter

CORPUS = corpus_path("pages-labelled")
BATCH_SIZES = (4, 8, 16)
TENANT_SHARES = (0.40, 0.25, 0.15, 0.10, 0.06, 0.04)
INTERACTIVE_SHARE = 0.10
JITTER_SIGMA = 0.3


@dataclass(frozen=True)
class LabelledPage:
    name: str
    mode: str
    predicted_tokens: int
    true_tokens: int


@dataclass(frozen=True)
class QueuedPage:
    """A due page as a claim reads it, plus its true output length."""

    mode: str
    predicted_tokens: int
    true_tokens: int
    lane: str
    turn: int
    page_no: int = 1
    document_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Outcome:
    waste: int = 0  # row steps spent on finished rows
    steps: int = 0  # decode steps: Σ over batches of the longest true length
    useful: int = 0  # Σ true lengths
    lateness: list[int] = field(default_factory=list)  # per page: batch index − FIFO batch index

    def add(self, other: Outcome) -> None:
        self.waste += other.waste
        self.steps += other.steps
        self.useful += other.useful
        self.lateness.extend(other.lateness)


Batcher = Callable[[list[QueuedPage], int], list[list[QueuedPage]]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--gt-tokenizer", type=Path, help="directory with the DeepSeek tokenizer.json")
    parser.add_argument("--backlog", type=int, default=2000, help="pages in the simulated backlog")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW_BATCHES, help="window, in batches")
    args = parser.parse_args()

    pages = labelled_pages(args.corpus, args.gt_tokenizer)
    truth = "DeepSeek tokenizer on the GT text" if args.gt_tokenizer else "labels.csv est_text_tokens"
    modes = sorted({page.mode for page in pages})
    print(f"{len(pages)} labelled pages with ground truth ({truth}); modes: {', '.join(modes)}")
    errors = [abs(page.predicted_tokens - page.true_tokens) / page.true_tokens for page in pages]
    print(f"router prediction vs truth: median abs error {statistics.median(errors):.0%}\n")

    once = [
        QueuedPage(page.mode, page.predicted_tokens, page.true_tokens, Lane.BULK.value, turn)
        for turn, page in enumerate(pages, start=1)
    ]
    print("1. the labelled pages, each once (one bulk tenant, labels.csv order)")
    print_table({size: compare(once, size, args.window) for size in BATCH_SIZES})
    print()
    print(f"2. backlog of {args.backlog} pages drawn from them, {len(TENANT_SHARES)} tenants, ", end="")
    print(f"{INTERACTIVE_SHARE:.0%} interactive, summed over {args.seeds} seeds")
    results: dict[int, dict[str, Outcome]] = {size: {} for size in BATCH_SIZES}
    for seed in range(args.seeds):
        backlog = draw_backlog(pages, args.backlog, random.Random(seed))
        for size in BATCH_SIZES:
            for name, outcome in compare(backlog, size, args.window).items():
                results[size].setdefault(name, Outcome()).add(outcome)
    print_table(results)


def labelled_pages(corpus: Path, gt_tokenizer: Path | None) -> list[LabelledPage]:
    gt_counter = TokenizerCounter(gt_tokenizer) if gt_tokenizer else None
    rows = evaluate(corpus, RoutingPolicy(), token_counter(None), gt_counter)
    return [
        LabelledPage(row.file, row.chosen, row.predicted_tokens, row.gt_tokens)
        for row in rows
        if row.chosen != SKIP and row.gt_tokens
    ]


def draw_backlog(pages: Sequence[LabelledPage], count: int, generator: random.Random) -> list[QueuedPage]:
    """``count`` due pages in arrival order, each with its tenant's next turn in its lane."""
    turns: dict[tuple[str, int], int] = {}
    backlog = []
    for _ in range(count):
        page = generator.choice(pages)
        scale = math.exp(generator.gauss(0.0, JITTER_SIGMA))
        tenant = generator.choices(range(len(TENANT_SHARES)), weights=TENANT_SHARES)[0]
        lane = Lane.INTERACTIVE.value if generator.random() < INTERACTIVE_SHARE else Lane.BULK.value
        turns[lane, tenant] = turns.get((lane, tenant), 0) + 1
        backlog.append(
            QueuedPage(
                mode=page.mode,
                predicted_tokens=max(1, round(page.predicted_tokens * scale)),
                true_tokens=max(1, round(page.true_tokens * scale)),
                lane=lane,
                turn=turns[lane, tenant],
            )
        )
    return backlog


def compare(queue: list[QueuedPage], size: int, window: int) -> dict[str, Outcome]:
    batchers: dict[str, Batcher] = {
        "FIFO": fifo,
        "length-aware": lambda rows, b: plan_batches(rows, b, window_batches=window),
        "oracle": lambda rows, b: [
            [row.original for row in batch]
            for batch in plan_batches([Known(row) for row in rows], b, window_batches=window)
        ],
    }
    outcomes = {name: Outcome() for name in batchers}
    for mode in sorted({row.mode for row in queue}):
        rows = claim_order([row for row in queue if row.mode == mode])
        served_fifo = _served_in(fifo(rows, size))
        for name, batcher in batchers.items():
            batches = batcher(rows, size)
            served = _served_in(batches)
            outcomes[name].add(
                Outcome(
                    waste=sum(wasted_steps([row.true_tokens for row in batch]) for batch in batches),
                    steps=sum(max(row.true_tokens for row in batch) for batch in batches),
                    useful=sum(row.true_tokens for row in rows),
                    lateness=[served[id(row)] - served_fifo[id(row)] for row in rows],
                )
            )
    return outcomes


def fifo(rows: list[QueuedPage], size: int) -> list[list[QueuedPage]]:
    ordered = claim_order(rows)
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


@dataclass(frozen=True)
class Known:
    """A queued page whose prediction is its true length: what grouping could do at best."""

    original: QueuedPage

    @property
    def document_id(self) -> uuid.UUID:
        return self.original.document_id

    @property
    def page_no(self) -> int:
        return self.original.page_no

    @property
    def predicted_tokens(self) -> int:
        return self.original.true_tokens

    @property
    def lane(self) -> str:
        return self.original.lane

    @property
    def turn(self) -> int:
        return self.original.turn


def print_table(results: dict[int, dict[str, Outcome]]) -> None:
    header = (
        f"{'B':>3} {'FIFO waste':>11} {'length-aware':>13} {'saved':>6} {'oracle':>9} "
        f"{'FIFO steps':>11} {'LA steps':>9} {'saved':>6} {'later':>6} {'late max':>9}"
    )
    print(header)
    print("-" * len(header))
    for size, outcomes in results.items():
        plain, aware, best = outcomes["FIFO"], outcomes["length-aware"], outcomes["oracle"]
        print(
            f"{size:>3} {plain.waste:>11,} {aware.waste:>13,} {_saved(plain.waste, aware.waste):>6} "
            f"{best.waste:>9,} {plain.steps:>11,} {aware.steps:>9,} {_saved(plain.steps, aware.steps):>6} "
            f"{_share_later(aware.lateness):>6} {max(aware.lateness):>9}"
        )
    useful = next(iter(results.values()))["FIFO"].useful
    print(f"(useful row steps, Σ true lengths: {useful:,}; waste and steps summed over modes and seeds)")


def _saved(before: int, after: int) -> str:
    return "-" if before == 0 else f"{(before - after) / before:.0%}"


def _share_later(lateness: list[int]) -> str:
    return f"{sum(late > 0 for late in lateness) / len(lateness):.0%}"


def _served_in(batches: list[list[QueuedPage]]) -> dict[int, int]:
    return {id(row): index for index, batch in enumerate(batches) for row in batch}


if __name__ == "__main__":
    main()
