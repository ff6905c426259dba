"""Rendering console pages: the template environment, security headers and small view models."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from api.console.rendering import render_markdown

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"

# Scripts and styles come only from this server's static files: no inline script, no inline style,
# no framing, no plugins; forms post only here.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
KNOWN_LABELS = {
    "text", "title", "sub_title", "table", "table_caption", "table_footnote", "image", "image_caption",
    "figure", "formula", "equation", "list", "header", "footer", "page_number", "reference", "code",
}  # fmt: skip


def label_class(label: str) -> str:
    """A CSS class for a layout label: one colour per known label, one for the rest."""
    name = re.sub(r"[^a-z_]", "", label.lower())
    return f"label-{name}" if name in KNOWN_LABELS else "label-other"


def age(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return duration((datetime.now(UTC) - moment).total_seconds()) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def number(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}".replace(",", "\u202f")
    return f"{int(value):,}".replace(",", "\u202f")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _markdown(text: str | None, images: Mapping[str, str] | None = None) -> Markup:
    return Markup(render_markdown(text, images))  # noqa: S704 - sanitised by nh3 in render_markdown


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        age=age, duration=duration, number=number, pretty=_pretty, markdown=_markdown, label_class=label_class
    )
    return environment


TEMPLATES = _environment()


def render(request: Request, template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    page = TEMPLATES.get_template(template).render(request=request, **context)
    return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)


@dataclass(frozen=True)
class Bar:
    key: str
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    maximum: float
    width: int = 640
    height: int = 160


def bar_chart(title: str, points: list[tuple[str, float]], *, width: int = 640, height: int = 160) -> Chart:
    """Bars in SVG user units (drawn by the template as ``<rect>``s; no inline style needed)."""
    maximum = max((value for _, value in points), default=0.0)
    slot = width / max(len(points), 1)
    bars = []
    for index, (key, value) in enumerate(points):
        bar_height = (value / maximum) * (height - 20) if maximum else 0.0
        bars.append(
            Bar(
                key=key,
                value=value,
                x=round(index * slot + slot * 0.1, 2),
                y=round(height - bar_height, 2),
                width=round(slot * 0.8, 2),
                height=round(bar_height, 2),
            )
        )
    return Chart(title=title, bars=bars, maximum=maximum, width=width, height=height)
