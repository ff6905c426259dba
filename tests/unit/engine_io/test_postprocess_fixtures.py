"""parse_output on two real DeepSeek-OCR outputs (docling's test data) and their pages.

The ``*.deepseek-parsed.md`` files are docling's rendering of the same raw output, which differs
from ours in four documented ways; :func:`as_docling_renders` undoes exactly those and nothing else:
1. docling replaces a picture by ``<!-- image -->`` after its caption; we link the crop before it.
   Both are removed here (our links are checked separately).
2. docling HTML-escapes the text (``&lt;center&gt;``); we keep the model's HTML.
3. docling turns HTML tables into pipe tables with spans repeated; we keep the model's HTML.
4. docling drops text that precedes the first grounded element; we keep it.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pypdfium2
import pytest
from PIL import Image

from worker.engine.deepseek.postprocess import ParsedPage, looks_repetitive, parse_output

from .html_tables import pipe_tables

TITLE_RAW = "2206.01062-p1.deepseek-raw.md"
TITLE_PARSED = "2206.01062-p1.deepseek-parsed.md"
TABLE_RAW = "2305.03393v1-pg9.deepseek-raw.md"
TABLE_PARSED = "2305.03393v1-pg9.deepseek-parsed.md"


@pytest.fixture(scope="module")
def fixtures(corpus: Path) -> dict[str, str]:
    folder = corpus / "model-output-fixtures"
    names = (TITLE_RAW, TITLE_PARSED, TABLE_RAW, TABLE_PARSED)
    return {name: (folder / name).read_text(encoding="utf-8") for name in names}


@pytest.fixture(scope="module")
def title_page(corpus: Path) -> Image.Image:
    with Image.open(corpus / "bad-input" / "odd-images" / "2206.01062.tif") as tiff:
        tiff.seek(0)  # the manifest's "frame 1"
        return tiff.convert("RGB")


@pytest.fixture(scope="module")
def table_page(corpus: Path) -> Image.Image:
    document = pypdfium2.PdfDocument(corpus / "pages-labelled" / "academic" / "2305.03393v1-pg9.pdf")
    try:
        rendered: Image.Image = document[0].render(scale=144 / 72).to_pil()
        return rendered.convert("RGB")
    finally:
        document.close()


def as_docling_renders(parsed: ParsedPage, preamble: str = "") -> str:
    markdown = parsed.markdown
    for figure in parsed.figures:
        markdown = markdown.replace(f"![]({figure.name})\n\n", "")
    assert markdown.startswith(preamble)
    return pipe_tables(markdown.removeprefix(preamble).lstrip("\n"))


def docling_markdown(parsed_fixture: str) -> str:
    text = html.unescape(parsed_fixture)
    return text.replace("<!-- image -->\n\n", "").replace("\n\n<!-- image -->", "").strip()


def test_title_page_blocks(fixtures: dict[str, str], title_page: Image.Image) -> None:
    parsed = parse_output(fixtures[TITLE_RAW], page_no=1, image=title_page)

    assert [block.label for block in parsed.blocks] == [
        "title", "text", "text", "text", "text", "text", "sub_title", "text", "sub_title", "text",
        "image", "image_caption", "sub_title", "text", "sub_title", "text",
    ]  # fmt: skip
    assert all(len(block.boxes) == 1 for block in parsed.blocks)
    assert parsed.blocks[0].boxes == ((104, 80, 505, 118),)  # [[171, 101, 825, 150]] on 612 x 792
    assert parsed.blocks[10].boxes == ((324, 245, 554, 528),)  # [[530, 310, 905, 666]]
    assert (
        parsed.blocks[0].text == "# DocLayNet: A Large Human-Annotated Dataset for Document-Layout Analysis"
    )
    assert parsed.blocks[10].text == ""
    assert parsed.blocks[11].text.startswith("<center>Figure 1: Four examples")
    for block in parsed.blocks:
        x1, y1, x2, y2 = block.boxes[0]
        assert 0 <= x1 < x2 <= 612
        assert 0 <= y1 < y2 <= 792


def test_title_page_figure_is_cropped_and_linked(fixtures: dict[str, str], title_page: Image.Image) -> None:
    parsed = parse_output(fixtures[TITLE_RAW], page_no=1, image=title_page)

    assert len(parsed.figures) == 1
    figure = parsed.figures[0]
    assert figure.name == "figures/p0001_0.jpg"
    assert figure.box == (324, 245, 554, 528)
    assert figure.image.mode == "RGB"
    assert figure.image.size == (230, 283)
    assert np.array_equal(np.asarray(figure.image), np.asarray(title_page)[245:528, 324:554])
    assert "\n\n![](figures/p0001_0.jpg)\n\n<center>Figure 1: Four examples" in parsed.markdown


def test_title_page_markdown_matches_docling(fixtures: dict[str, str], title_page: Image.Image) -> None:
    parsed = parse_output(fixtures[TITLE_RAW], page_no=1, image=title_page)
    assert as_docling_renders(parsed) == docling_markdown(fixtures[TITLE_PARSED])


def test_table_page_blocks(fixtures: dict[str, str], table_page: Image.Image) -> None:
    assert table_page.size == (1224, 1584)
    parsed = parse_output(fixtures[TABLE_RAW], page_no=9, image=table_page)

    assert [block.label for block in parsed.blocks] == [
        "sub_title", "text", "table", "table_caption", "sub_title", "text", "text",
    ]  # fmt: skip
    assert parsed.blocks[2].boxes == ((275, 667, 952, 943),)  # [[225, 421, 777, 595]] on 1224 x 1584
    # The model wrote the table after its caption, so the HTML belongs to the caption's content.
    assert parsed.blocks[2].text == ""
    caption = parsed.blocks[3].text
    assert caption.startswith("Table 1. HPO performed in OTSL and HTML")
    assert caption.endswith("<td>0.824</td><td>2</td></tr></table>")
    assert parsed.figures == ()


def test_table_page_markdown_matches_docling(fixtures: dict[str, str], table_page: Image.Image) -> None:
    parsed = parse_output(fixtures[TABLE_RAW], page_no=9, image=table_page)

    preamble = "order to compute the TED score. Inference timing results for all experiments"
    assert parsed.markdown.startswith(preamble)
    first_line = parsed.markdown.split("\n", 1)[0]
    assert as_docling_renders(parsed, first_line) == docling_markdown(fixtures[TABLE_PARSED])


@pytest.mark.parametrize("name", [TITLE_RAW, TABLE_RAW])
def test_real_outputs_do_not_look_repetitive(fixtures: dict[str, str], name: str) -> None:
    assert not looks_repetitive(fixtures[name])
