"""``scriptorium route PATH…``: a dry run of mode routing (options: scriptorium/cli/local.py).

Each file goes through the same intake and rasterisation as the fleet; every page is measured
and routed, nothing is read by the engine. Prints per page the facts, the predicted text tokens,
the chosen mode and its vision-token cost, then the document's totals against reading every
page in base and in gundam, once per requested model family. With ``json_output``: one object
per file, family and line.

Per family, routing takes the family's target ratio and text-token prediction. The published
evidence differs in neither (Unlimited-OCR keeps DeepSeek-OCR's encoder, modes and tokenizer and
publishes no compression curve of its own; docs/ROUTING.md), so both use DeepSeek-OCR's and
their forecasts agree today; the family is named in every forecast so that stays visible.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scriptorium.errors import InputRejected
from scriptorium.model_families import DEFAULT_MODEL_FAMILY, ModelFamily
from scriptorium.page_ranges import resolve_page_selection
from scriptorium.policy import RoutingPolicy
from scriptorium.progress import GrowingCount, count_progress
from scriptorium.settings import Settings
from worker.routing.decide import RoutingDecision, decide
from worker.routing.facts import measure_page
from worker.routing.forecast import Forecast
from worker.routing.tokens import TokenCounter, token_counter

EXIT_OK, EXIT_FILE_REJECTED, EXIT_USAGE = 0, 1, 2
SKIP = "skip"


@dataclass(frozen=True)
class RouteRequest:
    paths: Sequence[Path]
    policy: str | None = None  # policy JSON, or @file holding it
    mode: str | None = None  # the flags override the policy JSON
    target_ratio: float | None = None
    min_mode: str | None = None
    max_mode: str | None = None
    model: Path | None = None  # count text tokens with this model's tokenizer
    model_families: Sequence[ModelFamily] = (DEFAULT_MODEL_FAMILY,)
    pages: str | None = None
    password: str | None = None
    json_output: bool = False
    progress: bool = True  # drawn on stderr, only when it is a terminal


@dataclass(frozen=True)
class RoutedPage:
    page_no: int
    decision: RoutingDecision


def run_route(request: RouteRequest, settings: Settings) -> int:
    """Route every file; returns the exit status (0 all routed, 1 a file rejected, 2 bad policy)."""
    try:
        policy = _policy(request)
        counter = token_counter(request.model)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"scriptorium route: {error}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_OK
    engine = settings.engine
    with count_progress(request.progress) as progress:
        pages = GrowingCount(progress, "pages")
        for path in request.paths:
            pages.describe(path.name)
            try:
                routed = _route_file(
                    path, settings=settings, policy=policy, counter=counter, request=request, pages=pages
                )
            except InputRejected as rejection:
                pages.note(f"{path}: {rejection.reason}: {rejection.message}")
                status = EXIT_FILE_REJECTED
                continue
            forecast = Forecast.of(
                (page.decision for page in routed), min_crops=engine.min_crops, max_crops=engine.max_crops
            )
            for family in request.model_families:
                if request.json_output:
                    print(
                        json.dumps(_file_json(path, family, routed, forecast), ensure_ascii=False), flush=True
                    )
                else:
                    print(_file_text(path, family, routed, forecast), flush=True)
    return status


def _policy(request: RouteRequest) -> RoutingPolicy:
    raw = request.policy or ""
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text(encoding="utf-8")
    flags = {
        "mode": request.mode,
        "target_ratio": request.target_ratio,
        "min_mode": request.min_mode,
        "max_mode": request.max_mode,
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
    request: RouteRequest,
    pages: GrowingCount,
) -> list[RoutedPage]:
    from worker.prepare.render import open_document

    engine = settings.engine
    routed: list[RoutedPage] = []
    with open_document(path, settings.prepare, password=request.password) as document:
        selected = resolve_page_selection(request.pages, document.info.page_count)
        pages.add(len(selected))
        for page in document.render(selected):
            decision = decide(
                measure_page(page.image, page.text_layer, counter=counter),
                policy,
                min_crops=engine.min_crops,
                max_crops=engine.max_crops,
            )
            routed.append(RoutedPage(page.page_no, decision))
            pages.advance()
    return routed


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


def _file_json(
    path: Path, family: ModelFamily, routed: list[RoutedPage], forecast: Forecast
) -> dict[str, Any]:
    return {
        "path": str(path),
        "model": family.value,
        "pages": [_page_json(page) for page in routed],
        "totals": forecast.as_dict(),
    }


def _file_text(path: Path, family: ModelFamily, routed: list[RoutedPage], forecast: Forecast) -> str:
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
        f"total for {family.value}: {forecast.routed:,} vision tokens for {forecast.pages} pages "
        f"({forecast.skipped} skipped); "
        f"always-base {forecast.always_base:,} ({forecast.share_of(forecast.always_base):.0%}), "
        f"always-gundam {forecast.always_gundam:,} ({forecast.share_of(forecast.always_gundam):.0%})"
    )
    return "\n".join(lines)
