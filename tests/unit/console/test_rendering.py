"""Model output through the console's markdown renderer and sanitiser."""

from __future__ import annotations

import re

import pytest

from api.console.rendering import render_markdown
from api.console.views import bar_chart, label_class


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="JaVaScRiPt:alert(1)">x</a>',
        '<td onclick="alert(1)">x</td>',
        '<iframe src="https://evil.example"></iframe>',
        '<svg onload="alert(1)"><circle r="1"/></svg>',
        '<div style="background:url(javascript:alert(1))">x</div>',
        '<form action="https://evil.example"><button>go</button></form>',
        "[x](javascript:alert(1))",
        '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
        '<span class="math" onclick="alert(1)">x</span>',
    ],
)
def test_nothing_executable_survives(hostile: str) -> None:
    html = render_markdown(f"before\n\n{hostile}\n\nafter").lower()
    for forbidden in (
        "<script",
        "onerror",
        "onclick",
        "onload",
        "javascript:",
        "<iframe",
        "<svg",
        "style=",
        "<form",
    ):
        assert forbidden not in html.replace("[x](javascript:alert(1))", ""), (hostile, html)
    assert "before" in html and "after" in html


def test_a_markdown_link_to_javascript_stays_text() -> None:
    assert "href" not in render_markdown("[x](javascript:alert(1))")


def test_tables_and_links_survive() -> None:
    html = render_markdown(
        '| a | b |\n|---|---|\n| 1 | 2 |\n\n<table><tr><td colspan="2">merged</td></tr></table>\n\n'
        "[site](https://example.org)"
    )
    assert "<th>a</th>" in html and "<td>2</td>" in html
    assert '<td colspan="2">merged</td>' in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">site</a>' in html


def test_formulas_keep_their_backslashes_for_katex() -> None:
    html = render_markdown("inline \\(\\alpha_1 < 2\\) and\n\n\\[\\frac{a}{b}\\]\n\n$$x^2$$")
    assert '<span class="math">\\alpha_1 &lt; 2</span>' in html
    assert '<div class="math">\\frac{a}{b}</div>' in html
    assert '<div class="math">x^2</div>' in html


def test_empty_output_renders_nothing() -> None:
    assert render_markdown(None) == "" and render_markdown("") == ""


def test_labels_map_to_a_fixed_set_of_classes() -> None:
    assert label_class("Title") == "label-title"
    assert label_class('x" onmouseover="alert(1)') == "label-other"


def test_bars_scale_to_the_largest_value() -> None:
    chart = bar_chart("t", [("a", 0.0), ("b", 5.0), ("c", 10.0)], width=300, height=120)
    assert [bar.height for bar in chart.bars] == [0.0, 50.0, 100.0]
    assert chart.bars[2].y == 20.0 and chart.maximum == 10.0
    assert bar_chart("t", []).bars == []


def test_the_console_loads_nothing_from_other_hosts() -> None:
    """Air-gapped hosts: templates, styles and scripts reference only this server's own files."""
    from api.console.views import HERE

    sources = [
        *(HERE / "templates").glob("*.html"),
        HERE / "static" / "console.css",
        HERE / "static" / "console.js",
    ]
    assert len(sources) > 5
    for source in sources:
        text = source.read_text()
        for reference in ("http://", "https://", 'src="//', 'href="//', "url(//"):
            assert reference not in text, f"{source.name} loads from elsewhere: {reference}"
    katex = HERE / "static" / "katex"
    assert (katex / "LICENSE").exists() and (katex / "katex.min.js").exists()
    fonts = {font.name for font in (katex / "fonts").glob("*.woff2")}
    for wanted in re.findall(r"fonts/(KaTeX_[A-Za-z0-9_-]+\.woff2)", (katex / "katex.min.css").read_text()):
        assert wanted in fonts


def test_images_show_only_the_pages_own_figures() -> None:
    figures = {"figures/p0001_0.jpg": "/console/documents/d/pages/1/figures/figures/p0001_0.jpg"}
    html = render_markdown(
        "![](figures/p0001_0.jpg)\n\n![](https://tracker.example/pixel.png)\n\n<img src='figures/other.jpg'>",
        figures,
    )
    assert '<img src="/console/documents/d/pages/1/figures/figures/p0001_0.jpg" alt="">' in html
    assert "tracker.example" not in html and "other.jpg" not in html
    assert "figures/p0001_0.jpg" not in render_markdown("![](figures/p0001_0.jpg)")  # no map: no source
