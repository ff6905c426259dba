"""``scriptorium route PATH…``: a dry run of mode routing, to forecast cost before ingesting.

Each file goes through the same intake and rasterisation as the fleet; every page is measured
and routed, nothing is read by the engine. Prints per page the facts, the predicted text tokens,
the chosen mode and its vision-token cost, then the document's totals against reading every
page in base and in gundam. With ``--json``: one object per file and line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scriptorium.errors import InputRejected
from scriptorium.modes import Mode
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.policy import AUTO, RoutingPolicy
from scriptorium.settings import Settings, load_settings
from worker.routing.decide import RoutingDecision, decide
from worker.routing.facts import measure_page
from worker.routing.forecast import Forecast
from worker.routing.tokens import TokenCounter, token_counter

EXIT_OK, EXIT_FILE_REJECTED, EXIT_USAGE = 0, 1, 2
SKIP = "skip"


@dataclass(frozen=True)
class RoutedPage:
    page_no: int
    decision: RoutingDecision


def route_command(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        policy = _policy(args)
        counter = token_counter(args.model)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"scriptorium route: {error}", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings()
    status = EXIT_OK
    for path in args.paths:
        try:
            routed = _route_file(path, settings=settings, policy=policy, counter=counter, args=args)
        except InputRejected as rejection:
            print(f"{path}: {rejection.reason}: {rejection.message}", file=sys.stderr)
            status = EXIT_FILE_REJECTED
            continue
        engine = settings.engine
        forecast = Forecast.of(
            (page.decision for page in routed), min_crops=engine.min_crops, max_crops=engine.max_crops
        )
        if args.json:
            print(json.dumps(_file_json(path, routed, forecast), ensure_ascii=False))
        else:
            print(_file_text(path, routed, forecast))
    return status


def _parser() -> argparse.ArgumentParser:
    modes = [mode.value for mode in Mode]
    parser = argparse.ArgumentParser(
        prog="scriptorium route",
        description="Dry-run mode routing: per-page facts, modes and vision-token cost.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    parser.add_argument("--policy", help='policy JSON or @file holding it, e.g. {"max_mode": "large"}')
    parser.add_argument("--mode", choices=[AUTO, *modes], help="auto or a fixed mode")
    parser.add_argument("--target-ratio", type=float, help="most predicted text tokens per vision token")
    parser.add_argument("--min-mode", choices=modes)
    parser.add_argument("--max-mode", choices=modes)
    parser.add_argument("--model", type=Path, help="model directory: count text tokens with its tokenizer")
    parser.add_argument("--pages", help="page selection, e.g. 1-3,5")
    parser.add_argument("--password", help="password of an encrypted PDF")
    parser.add_argument("--json", action="store_true", help="one JSON object per file and line")
    return parser


def _policy(args: argparse.Namespace) -> RoutingPolicy:
    raw = args.policy or ""
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text(encoding="utf-8")
    flags = {
        "mode": args.mode,
        "target_ratio": args.target_ratio,
        "min_mode": args.min_mode,
        "max_mode": args.max_mode,
    }
    try:
        base = RoutingPolicy.from_json(raw)
        return base.overlay({name: value for name, value in flags.items() if value is not None})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "policy"
        raise ValueError(f"invalid policy: {where}: {first['msg']}") from error


def _route_file(
    path: Path,
    *,
    settings: Settings,
    policy: RoutingPolicy,
    counter: TokenCounter,
    args: argparse.Namespace,
) -> list[RoutedPage]:
    from worker.prepare.render import open_document

    engine = settings.engine
    with open_document(path, settings.prepare, password=args.password) as document:
        selected = resolve_page_selection(args.pages, document.info.page_count)
        return [
            RoutedPage(
                page.page_no,
                decide(
                    measure_page(page.image, page.text_layer, counter=counter),
                    policy,
                    min_crops=engine.min_crops,
                    max_crops=engine.max_crops,
                ),
            )
            for page in document.render(selected)
        ]


def _page_json(page: RoutedPage) -> dict[str, Any]:
    decision = page.decision
    routing = decision.as_dict()
    return {
        "page_no": page.page_no,
        "width": decision.facts.width,
        "height": decision.facts.height,
        "predicted_text_tokens": decision.predicted_text_tokens,
        "mode": SKIP if decision.mode is None else decision.mode.value,
        "vision_tokens": decision.vision_tokens,
        "valid_tokens": decision.valid_tokens,
        "placeholders": decision.placeholders,
        "grid": routing["grid"],
        "predicted_ratio": decision.predicted_ratio,
        "source": decision.source.value,
        "reason": decision.reason,
        "facts": routing["facts"],
    }


def _file_json(path: Path, routed: list[RoutedPage], forecast: Forecast) -> dict[str, Any]:
    return {"path": str(path), "pages": [_page_json(page) for page in routed], "totals": forecast.as_dict()}


def _file_text(path: Path, routed: list[RoutedPage], forecast: Forecast) -> str:
    header = f"{'page':>4}  {'size':>11}  {'source':<10}  {'ink':>6}  {'lines':>5}  {'layer':>6}  "
    header += f"{'tokens':>6}  {'mode':<6}  {'vision':>6}  reason"
    lines = [f"{path}", header]
    for page in routed:
        decision, facts = page.decision, page.decision.facts
        layer = "-" if facts.layer_tokens is None else f"{facts.layer_tokens:,}"
        mode = SKIP if decision.mode is None else decision.mode.value
        lines.append(
            f"{page.page_no:>4}  {facts.width:>5}×{facts.height:<5}  {decision.source.value:<10}  "
            f"{facts.ink.ink_ratio:>6.1%}  {facts.ink.text_lines:>5}  {layer:>6}  "
            f"{decision.predicted_text_tokens:>6,}  {mode:<6}  {decision.vision_tokens:>6,}  "
            f"{decision.reason}"
        )
    lines.append(
        f"total: {forecast.routed:,} vision tokens for {forecast.pages} pages ({forecast.skipped} skipped); "
        f"always-base {forecast.always_base:,} ({forecast.share_of(forecast.always_base):.0%}), "
        f"always-gundam {forecast.always_gundam:,} ({forecast.share_of(forecast.always_gundam):.0%})"
    )
    return "\n".join(lines)
