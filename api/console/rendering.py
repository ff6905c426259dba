"""Model output to safe HTML: markdown rendered, then sanitised; formulas kept for KaTeX.

Model output is untrusted text that may contain HTML (DeepSeek-OCR writes tables as HTML). It is
rendered with markdown-it (HTML passed through), then cleaned by nh3 (ammonia) with an allow-list:
no scripts, no event handlers, no style, links only to http(s)/mailto, images only the page's own
figure crops. Formulas (``\\(…\\)``,
``\\[…\\]``, ``$$…$$``) are lifted out before markdown can mangle their backslashes and put back as
escaped text inside ``span.math``/``div.math``, which the console's static script typesets.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

_MATH = re.compile(r"\\\[(?P<display>.+?)\\\]|\$\$(?P<dollars>.+?)\$\$|\\\((?P<inline>.+?)\\\)", re.DOTALL)

TAGS = {
    "a", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "del", "div", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "li", "ol", "p", "pre", "s", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "img",
}  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start"},
    "img": {"src", "alt"},
}
CLASSES = {"span": {"math"}, "div": {"math"}}
URL_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table").enable("strikethrough")


def sanitise(fragment: str, images: Mapping[str, str] | None = None) -> str:
    """Clean an HTML fragment down to the allow-list. An image keeps its ``src`` only when it names
    one of ``images`` (the page's own figure crops), rewritten to where the console serves it, so
    model output can never make the browser load anything else."""
    known = images or {}

    def only_known_images(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            return known.get(value)
        return value

    return nh3.clean(
        fragment,
        tags=TAGS,
        attributes=ATTRIBUTES,
        attribute_filter=only_known_images,
        allowed_classes=CLASSES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str | None, images: Mapping[str, str] | None = None) -> str:
    """Safe HTML for a page's (or a block's) model output; ``images`` maps figure names to URLs."""
    if not text:
        return ""
    formulas: list[tuple[bool, str]] = []
    marker = f"scriptoriummath{secrets.token_hex(8)}"  # letters and digits: markdown leaves it alone

    def lift(match: re.Match[str]) -> str:
        inline = match.group("inline")
        tex = inline if inline is not None else match.group("display") or match.group("dollars")
        formulas.append((inline is None, tex))
        return f"{marker}n{len(formulas) - 1}e"

    rendered = _markdown().render(_MATH.sub(lift, text))

    def restore(match: re.Match[str]) -> str:
        display, tex = formulas[int(match.group(1))]
        tag = "div" if display else "span"
        return f'<{tag} class="math">{html.escape(tex.strip())}</{tag}>'

    return sanitise(re.sub(rf"{marker}n(\d+)e", restore, rendered), images)
