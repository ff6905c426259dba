from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from worker.engine.deepseek.postprocess import (
    looks_repetitive,
    parse_det,
    parse_output,
    strip_special_tokens,
    to_page_box,
)

EOS = "<｜end▁of▁sentence｜>"
MARKERS = ("<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>", "<｜")


@pytest.fixture
def page() -> Image.Image:
    pixels = np.random.default_rng(7).integers(0, 256, size=(1000, 800, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def assert_no_markers(markdown: str) -> None:
    for marker in MARKERS:
        assert marker not in markdown


def test_plain_output_without_refs(page: Image.Image) -> None:
    raw = "Free OCR line one\nline two  \n\n\n\n\nAfter a gap" + EOS
    parsed = parse_output(raw, page_no=1, image=page)
    assert parsed.markdown == "Free OCR line one\nline two\n\nAfter a gap"
    assert parsed.blocks == ()
    assert parsed.figures == ()


def test_blocks_carry_label_boxes_and_text(page: Image.Image) -> None:
    raw = (
        "<|ref|>title<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\n# Heading  \n\n"
        "<|ref|>text<|/ref|><|det|>[[100, 200, 300, 400], [500, 600, 700, 800]]<|/det|>\nBody text.\n" + EOS
    )
    parsed = parse_output(raw, page_no=1, image=page)
    assert [(block.label, block.text) for block in parsed.blocks] == [
        ("title", "# Heading"),
        ("text", "Body text."),
    ]
    assert parsed.blocks[0].boxes == ((0, 0, 800, 1000),)
    # int(v / 999 * size): 100 -> 80, 200 -> 200, 300 -> 240, 400 -> 400 ...
    assert parsed.blocks[1].boxes == ((80, 200, 240, 400), (400, 600, 560, 800))
    assert parsed.markdown == "# Heading\n\nBody text."


@pytest.mark.parametrize(
    "det",
    [
        "[[1, 2, 3]]",
        "[[a, b, c, d]]",
        "[[1, 2, 3, 4]",
        "[[1, 2, 3, 4], [5, 6]]",
        "[[1, 2, 3, true]]",
        "[[NaN, 1, 2, 3]]",
        "[[1e999, 1, 2, 3]]",
        "__import__('os').system('true')",
        '{"x": 1}',
        "[]",
        "",
        "[" * 100_000,
        "[[" + "9" * 5000 + ", 1, 2, 3]]",
    ],
)
def test_malformed_det_gives_no_boxes_and_keeps_text(page: Image.Image, det: str) -> None:
    raw = f"<|ref|>text<|/ref|><|det|>{det}<|/det|>\nStill read."
    parsed = parse_output(raw, page_no=1, image=page)
    assert len(parsed.blocks) == 1
    assert parsed.blocks[0].label == "text"
    assert parsed.blocks[0].boxes == ()
    assert parsed.blocks[0].text == "Still read."
    assert parsed.markdown == "Still read."


def test_a_bare_box_is_one_box() -> None:
    assert parse_det("[10, 20, 30, 40]") == [(10, 20, 30, 40)]
    assert parse_det("[[10.5, 20, 30, 40]]") == [(10.5, 20, 30, 40)]


@pytest.mark.parametrize(
    ("grid_box", "expected"),
    [
        ((500, 500, 1200, 1500), (400, 500, 800, 1000)),
        ((-20, -5, 100, 100), (0, 0, 80, 100)),
        ((900, 800, 100, 50), (80, 50, 720, 800)),
        ((999, 999, 999, 999), (800, 1000, 800, 1000)),
        ((10**400, 1, 2, 3), (1, 1, 800, 3)),
    ],
)
def test_boxes_are_clamped_and_ordered(
    grid_box: tuple[float, float, float, float], expected: tuple[int, int, int, int]
) -> None:
    assert to_page_box(grid_box, 800, 1000) == expected


def test_missing_closing_det(page: Image.Image) -> None:
    raw = (
        "<|ref|>title<|/ref|><|det|>[[0, 0, 999, 499]]\n# Heading\n\n"
        "<|ref|>text<|/ref|><|det|>[[0, 500, 999, 999]]<|/det|>\nBody"
    )
    parsed = parse_output(raw, page_no=1, image=page)
    assert [block.boxes for block in parsed.blocks] == [((0, 0, 800, 499),), ((0, 500, 800, 1000),)]
    assert [block.text for block in parsed.blocks] == ["# Heading", "Body"]
    assert parsed.markdown == "# Heading\n\nBody"


def test_missing_closing_ref(page: Image.Image) -> None:
    raw = "<|ref|>text<|det|>[[0, 0, 999, 999]]<|/det|>\nBody"
    parsed = parse_output(raw, page_no=1, image=page)
    assert [(b.label, b.boxes, b.text) for b in parsed.blocks] == [("text", ((0, 0, 800, 1000),), "Body")]
    assert parsed.markdown == "Body"


def test_truncated_output_without_eos(page: Image.Image) -> None:
    raw = (
        "<|ref|>text<|/ref|><|det|>[[0, 0, 999, 999]]<|/det|>\nFirst paragraph.\n\n"
        "<|ref|>text<|/ref|><|det|>[[10, 20, 3"
    )
    parsed = parse_output(raw, page_no=1, image=page)
    assert [(b.boxes, b.text) for b in parsed.blocks] == [
        (((0, 0, 800, 1000),), "First paragraph."),
        ((), ""),
    ]
    assert parsed.markdown == "First paragraph."


def test_ref_without_det_is_a_block_without_boxes(page: Image.Image) -> None:
    parsed = parse_output(
        "<|ref|>equation<|/ref|>\n\\[ a \\coloneqq b \\eqqcolon c \\]", page_no=1, image=page
    )
    assert [(b.label, b.boxes, b.text) for b in parsed.blocks] == [("equation", (), "\\[ a := b =: c \\]")]
    assert parsed.markdown == "\\[ a := b =: c \\]"


def test_odd_whitespace_and_nested_markers(page: Image.Image) -> None:
    raw = (
        "<|grounding|><|ref|><|ref|> sub_title <|/ref|>  \n<|det|>[[ 0 ,0,\n 999 , 999 ]]<|/det|>\n"
        "\t## Section \t\n\n\n\n<|det|>[[1, 2, 3, 4]]<|/det|>Orphan det text<|/ref|>\n<|/det|>"
    )
    parsed = parse_output(raw, page_no=1, image=page)
    assert [(b.label, b.boxes) for b in parsed.blocks] == [("sub_title", ((0, 0, 800, 1000),))]
    assert parsed.blocks[0].text == "## Section\n\nOrphan det text"
    assert parsed.markdown == "## Section\n\nOrphan det text"
    assert_no_markers(parsed.markdown)


def test_table_heavy_output_is_kept_verbatim(page: Image.Image) -> None:
    empty_row = "<tr>" + "<td></td>" * 12 + "</tr>"
    table = "<table><tr><td>Item</td>" + "<td></td>" * 11 + "</tr>" + empty_row * 40 + "</table>"
    raw = f"<|ref|>table<|/ref|><|det|>[[10, 10, 990, 990]]<|/det|>\n{table}\n" + EOS
    parsed = parse_output(raw, page_no=3, image=page)
    assert parsed.blocks[0].text == table
    assert parsed.markdown == table
    assert not looks_repetitive(raw)


def test_figures_are_cropped_in_order_and_linked(page: Image.Image) -> None:
    raw = (
        "<|ref|>image<|/ref|><|det|>[[0, 0, 499, 499], [500, 500, 999, 999]]<|/det|>\n"
        "<|ref|>image_caption<|/ref|><|det|>[[0, 500, 499, 600]]<|/det|>\nFigure 1: two panels\n\n"
        "<|ref|>image<|/ref|><|det|>[[100, 100, 100, 400]]<|/det|>\n"
        "<|ref|>image<|/ref|><|det|>[[700, 0, 999, 99]]<|/det|>\n"
    )
    parsed = parse_output(raw, page_no=12, image=page.convert("L"))
    names = [figure.name for figure in parsed.figures]
    assert names == ["figures/p0012_0.jpg", "figures/p0012_1.jpg", "figures/p0012_2.jpg"]
    assert [figure.box for figure in parsed.figures] == [
        (0, 0, 399, 499),
        (400, 500, 800, 1000),
        (560, 0, 800, 99),
    ]
    assert [figure.image.size for figure in parsed.figures] == [(399, 499), (400, 500), (240, 99)]
    assert all(figure.image.mode == "RGB" for figure in parsed.figures)
    # The zero-width box stays in the layout but has nothing to crop.
    assert parsed.blocks[2].boxes == ((80, 100, 80, 400),)
    assert parsed.markdown == (
        "![](figures/p0012_0.jpg)\n\n![](figures/p0012_1.jpg)\n\nFigure 1: two panels\n\n"
        "![](figures/p0012_2.jpg)"
    )


def test_figure_pixels_come_from_the_page(page: Image.Image) -> None:
    raw = "<|ref|>image<|/ref|><|det|>[[100, 200, 300, 400]]<|/det|>"
    figure = parse_output(raw, page_no=1, image=page).figures[0]
    assert figure.box == (80, 200, 240, 400)
    assert np.array_equal(np.asarray(figure.image), np.asarray(page)[200:400, 80:240])


def test_strip_special_tokens() -> None:
    raw = "<｜begin▁of▁sentence｜>Text with <td>cells</td> and <|ref|>x<|/ref|><｜▁pad▁｜>" + EOS
    assert strip_special_tokens(raw) == "Text with <td>cells</td> and <|ref|>x<|/ref|>"
    assert strip_special_tokens("no markers\n") == "no markers\n"


@pytest.mark.parametrize(
    "text",
    [
        "Intro paragraph.\n" + "The same sentence comes back again.\n" * 40,
        "Intro\n" + "The same sentence comes back again.\n" * 40 + "The same sent",
        "<table>" + "<tr><td>1</td><td>2.5</td><td>total</td></tr>" * 30,
        "Numbers: " + "1, " * 200,
        "word " * 100 + EOS,
        "Heading\n\n" + "A long paragraph that the model keeps writing over and over. " * 3 * 12,
    ],
)
def test_looping_tails_are_detected(text: str) -> None:
    assert looks_repetitive(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short text",
        "Line one.\nLine two.\n" * 3,
        "<table>" + "<tr>" + "<td></td>" * 300 + "</tr></table>",
        "| - | - | - |\n" * 50,
        "=" * 500,
        "\n".join(f"Chapter {n} " + "." * 40 + f" {n * 7}" for n in range(1, 40)),
        "\n".join(f"Row {n}: value {n * n}" for n in range(200)),
    ],
)
def test_ordinary_text_is_not_repetitive(text: str) -> None:
    assert not looks_repetitive(text)
