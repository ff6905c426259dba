"""Evaluate mode routing on the labelled pages: chosen mode against the mode the ground truth implies.

Run from the repository root:
    python -m bench.routing_eval --gt-tokenizer DIR [--model DIR] [--target-ratio 10] [--markdown]

For every page of ``labels.csv`` the page is rendered by the prepare step and routed exactly as
the fleet routes it. The ground-truth text is the page's ``*.gt.md`` / ``*.gt.txt`` (image links
dropped, HTML tables compacted to the ``<table><tr><td>`` form DeepSeek-OCR writes), else, where
the labels name the text layer as the source, the page's text layer. It is counted with the
tokenizer in ``--gt-tokenizer`` (a directory holding a DeepSeek ``tokenizer.json``; the OCR table
tags are added as single tokens); without one the labels' rough ``est_text_tokens`` is used.

The implied mode is the cheapest mode whose valid vision tokens on this page keep the ground
truth at or under the target ratio — the same yardstick the router applies to its prediction.
Under-provisioned: chosen below implied. On target: implied or one mode above. Over: two or more
above. The routing rates were calibrated on corpus/pdf-real, never on these pages.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from scriptorium.modes import MODE_ORDER, Mode, token_geometry
from scriptorium.policy import RoutingPolicy
from scriptorium.settings import PrepareSettings
from tests.support.corpus import corpus_path
from worker.engine.tokenizer_counter import TokenizerCounter
from worker.prepare.render import render_pages
from worker.routing.decide import decide
from worker.routing.facts import measure_page
from worker.routing.tokens import TokenCounter, token_counter

DEFAULT_CORPUS = corpus_path("pages-labelled")
SKIP = "skip"
TARGETS = {"under_max": 0.10, "on_target_min": 0.80, "gundam_share_max": 0.40}
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_BETWEEN_TAGS = re.compile(r">\s+<")
_SECTION_TAGS = re.compile(r"</?(?:thead|tbody)>")


@dataclass(frozen=True)
class PageRow:
    file: str
    page_type: str
    language: str
    source: str  # text_layer | pixels
    gt_tokens: int | None
    predicted_tokens: int
    implied: str | None  # a mode, "skip", or None without ground truth
    chosen: str
    vision_tokens: int
    base_tokens: int
    gundam_tokens: int
    reason: str

    @property
    def offset(self) -> int | None:
        """Chosen rank minus implied rank; None without ground truth."""
        if self.implied is None:
            return None
        return _rank(self.chosen) - _rank(self.implied)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--gt-tokenizer", type=Path, help="directory with the DeepSeek tokenizer.json")
    parser.add_argument("--model", type=Path, help="route with this model directory's tokenizer")
    parser.add_argument("--target-ratio", type=float, default=10.0)
    parser.add_argument("--markdown", action="store_true", help="print the tables for docs/ROUTING.md")
    parser.add_argument("--json", action="store_true", help="print one JSON object per page")
    args = parser.parse_args()
    gt_counter = TokenizerCounter(args.gt_tokenizer) if args.gt_tokenizer else None
    rows = evaluate(
        args.corpus, RoutingPolicy(target_ratio=args.target_ratio), token_counter(args.model), gt_counter
    )
    if args.json:
        for row in rows:
            print(json.dumps({**asdict(row), "offset": row.offset}, ensure_ascii=False))
        return
    print(_summary(rows, gt_counter is not None, args.target_ratio, markdown=args.markdown))


def evaluate(
    corpus: Path, policy: RoutingPolicy, counter: TokenCounter, gt_counter: TokenCounter | None
) -> list[PageRow]:
    rows = []
    with (corpus / "labels.csv").open(encoding="utf-8") as labels:
        for label in csv.DictReader(labels):
            path = corpus / label["file"]
            page = next(render_pages(path, PrepareSettings()))
            decision = decide(measure_page(page.image, page.text_layer, counter=counter), policy)
            width, height = page.image.size
            gt_tokens = _gt_tokens(label, path, page.text_layer, gt_counter)
            blank = label["page_type"] == "blank"
            rows.append(
                PageRow(
                    file=label["file"],
                    page_type=label["page_type"],
                    language=label["language"],
                    source=decision.source.value,
                    gt_tokens=gt_tokens,
                    predicted_tokens=decision.predicted_text_tokens,
                    implied=SKIP if blank else _implied(gt_tokens, width, height, policy.target_ratio),
                    chosen=SKIP if decision.mode is None else decision.mode.value,
                    vision_tokens=decision.vision_tokens,
                    base_tokens=token_geometry(Mode.BASE, width, height).vision_features,
                    gundam_tokens=token_geometry(Mode.GUNDAM, width, height).vision_features,
                    reason=decision.reason,
                )
            )
    return rows


def ground_truth_text(label: dict[str, str], path: Path, text_layer: str | None) -> str | None:
    for name in label["gt"].split(";"):
        if name.endswith((".gt.md", ".gt.txt")):
            return normalise_markdown((path.parent / name).read_text(encoding="utf-8"))
    if "text-layer" in label["text_source"] and text_layer:
        return text_layer
    return None


def normalise_markdown(text: str) -> str:
    """Ground truth in the form DeepSeek-OCR writes it: no image links, compact HTML tables."""
    text = _IMAGE_LINK.sub("", text)
    text = _BETWEEN_TAGS.sub("><", text)
    return _SECTION_TAGS.sub("", text)


def _gt_tokens(
    label: dict[str, str], path: Path, text_layer: str | None, counter: TokenCounter | None
) -> int | None:
    if counter is None:
        return int(label["est_text_tokens"]) if label["est_text_tokens"] else None
    text = ground_truth_text(label, path, text_layer)
    return None if text is None else counter.count(text)


def _implied(gt_tokens: int | None, width: int, height: int, target_ratio: float) -> str | None:
    if gt_tokens is None:
        return None
    for mode in MODE_ORDER:
        if gt_tokens <= target_ratio * token_geometry(mode, width, height).valid:
            return mode.value
    return Mode.GUNDAM.value


def _rank(mode: str) -> int:
    return -1 if mode == SKIP else Mode(mode).rank


@dataclass(frozen=True)
class Tally:
    pages: int
    judged: int
    under: int
    on_target: int
    over: int
    routed: int
    base: int
    gundam: int
    median_error: float | None  # median |predicted - gt| / gt
    bias: float | None  # median predicted / gt

    @classmethod
    def of(cls, rows: Iterable[PageRow]) -> Tally:
        rows = list(rows)
        judged = [row for row in rows if row.offset is not None]
        offsets = [row.offset for row in judged if row.offset is not None]
        errors = [
            (row.predicted_tokens - row.gt_tokens) / row.gt_tokens
            for row in rows
            if row.gt_tokens and row.chosen != SKIP
        ]
        return cls(
            pages=len(rows),
            judged=len(judged),
            under=sum(offset < 0 for offset in offsets),
            on_target=sum(0 <= offset <= 1 for offset in offsets),
            over=sum(offset > 1 for offset in offsets),
            routed=sum(row.vision_tokens for row in rows),
            base=sum(row.base_tokens for row in rows),
            gundam=sum(row.gundam_tokens for row in rows),
            median_error=statistics.median(abs(e) for e in errors) if errors else None,
            bias=statistics.median(1 + e for e in errors) if errors else None,
        )


def _summary(rows: list[PageRow], real_gt: bool, target_ratio: float, *, markdown: bool) -> str:
    gt_kind = "DeepSeek tokenizer on the GT text" if real_gt else "labels.csv est_text_tokens"
    lines = [f"ground truth tokens: {gt_kind}; target ratio {target_ratio:g}; {len(rows)} pages", ""]
    lines += _page_table(rows, markdown=markdown)
    lines.append("")
    by_type: dict[str, list[PageRow]] = {}
    for row in rows:
        by_type.setdefault(row.page_type, []).append(row)
    lines += _type_table(by_type, markdown=markdown)
    total = Tally.of(rows)
    lines += ["", *_verdict(total)]
    return "\n".join(lines)


def _page_table(rows: list[PageRow], *, markdown: bool) -> list[str]:
    header = ["type", "page", "source", "GT tok", "pred tok", "implied", "chosen", "vision", "gundam"]
    body = [
        [
            row.page_type,
            Path(row.file).name[:34],
            row.source,
            "-" if row.gt_tokens is None else f"{row.gt_tokens:,}",
            f"{row.predicted_tokens:,}",
            row.implied or "-",
            row.chosen + _offset_mark(row.offset),
            str(row.vision_tokens),
            str(row.gundam_tokens),
        ]
        for row in rows
    ]
    return _table(header, body, markdown=markdown)


def _type_table(by_type: dict[str, list[PageRow]], *, markdown: bool) -> list[str]:
    header = ["type", "pages", "judged", "under", "implied/+1", "over", "vision", "vs gundam", "vs base"]
    header += ["median abs err", "pred/GT"]
    body = []
    for page_type, rows in sorted(by_type.items()):
        tally = Tally.of(rows)
        body.append(
            [
                page_type,
                str(tally.pages),
                str(tally.judged),
                str(tally.under),
                str(tally.on_target),
                str(tally.over),
                f"{tally.routed:,}",
                f"{tally.routed / tally.gundam:.0%}",
                f"{tally.routed / tally.base:.0%}",
                "-" if tally.median_error is None else f"{tally.median_error:.0%}",
                "-" if tally.bias is None else f"{tally.bias:.2f}",
            ]
        )
    return _table(header, body, markdown=markdown)


def _verdict(total: Tally) -> list[str]:
    judged = total.judged or 1
    under, on_target, share = total.under / judged, total.on_target / judged, total.routed / total.gundam
    return [
        f"judged pages: {total.judged} of {total.pages} (the rest have no ground-truth text)",
        f"under-provisioned: {total.under} ({under:.0%}; target <= {TARGETS['under_max']:.0%}) "
        f"{'met' if under <= TARGETS['under_max'] else 'MISSED'}",
        f"implied mode or one above: {total.on_target} ({on_target:.0%}; target >= "
        f"{TARGETS['on_target_min']:.0%}) {'met' if on_target >= TARGETS['on_target_min'] else 'MISSED'}",
        f"over-provisioned by two or more modes: {total.over} ({total.over / judged:.0%})",
        f"vision tokens: routed {total.routed:,}, "
        f"always-base {total.base:,} ({total.routed / total.base:.0%}), "
        f"always-gundam {total.gundam:,} ({share:.0%}; target <= {TARGETS['gundam_share_max']:.0%}) "
        f"{'met' if share <= TARGETS['gundam_share_max'] else 'MISSED'}",
        f"token estimate: median abs error {total.median_error or 0:.0%}, "
        f"median predicted/GT {total.bias or 0:.2f}",
    ]


def _offset_mark(offset: int | None) -> str:
    if offset is None or offset in (0, 1):
        return ""
    return " (under)" if offset < 0 else f" (+{offset})"


def _table(header: list[str], body: list[list[str]], *, markdown: bool) -> list[str]:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(cells) + " |" for cells in body]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *body]
    ]


if __name__ == "__main__":
    main()
