from __future__ import annotations

from PIL import Image, ImageDraw

from tests.unit.routing.conftest import LETTER, PageMaker, prose
from worker.routing.ink import measure_ink


def test_a_white_page_has_no_ink_and_no_lines(blank_page: Image.Image) -> None:
    profile = measure_ink(blank_page)

    assert profile.ink_ratio == 0
    assert profile.text_lines == 0
    assert profile.estimated_tokens == 0


def test_the_estimate_grows_with_the_amount_of_text(text_page: PageMaker) -> None:
    short = measure_ink(text_page(prose(1, 150)))
    long = measure_ink(text_page(prose(1, 600)))

    assert short.estimated_tokens > 0
    assert 3.0 <= long.estimated_tokens / short.estimated_tokens <= 5.0
    assert long.text_lines > short.text_lines >= 5


def test_the_estimate_is_in_the_range_of_real_english_tokens(text_page: PageMaker) -> None:
    # 500 short English words are about 500-560 DeepSeek tokens; the ink estimate stays within ±40%.
    profile = measure_ink(text_page(prose(2, 500)))

    assert 330 <= profile.estimated_tokens <= 780
    assert profile.cjk_share < 0.3
    assert 12 <= profile.line_height_px <= 26


def test_the_estimate_does_not_depend_on_resolution(text_page: PageMaker) -> None:
    page = text_page(prose(3, 400))
    half = page.resize((page.width // 2, page.height // 2), Image.Resampling.LANCZOS)

    full_tokens = measure_ink(page).estimated_tokens
    half_tokens = measure_ink(half).estimated_tokens

    assert abs(half_tokens - full_tokens) <= 0.25 * full_tokens


def test_a_rotated_page_is_read_along_its_vertical_lines(text_page: PageMaker) -> None:
    page = text_page(prose(4, 500))

    upright = measure_ink(page)
    rotated = measure_ink(page.rotate(90, expand=True))

    assert not upright.vertical
    assert rotated.vertical
    assert abs(rotated.estimated_tokens - upright.estimated_tokens) <= 0.1 * upright.estimated_tokens


def test_yellowed_paper_reads_like_white_paper(text_page: PageMaker) -> None:
    white = measure_ink(text_page(prose(5, 300)))
    yellowed = measure_ink(text_page(prose(5, 300), background=(232, 214, 160), ink=(60, 45, 30)))

    assert abs(yellowed.estimated_tokens - white.estimated_tokens) <= 0.15 * white.estimated_tokens


def test_table_rules_and_frames_are_not_text() -> None:
    page = Image.new("RGB", LETTER, "white")
    draw = ImageDraw.Draw(page)
    for y in range(200, 1400, 60):
        draw.line((100, y, 1120, y), fill="black", width=2)
    for x in range(100, 1121, 170):
        draw.line((x, 200, x, 1380), fill="black", width=2)
    draw.rectangle((40, 40, 1184, 1544), outline="black", width=3)

    profile = measure_ink(page)

    assert profile.ink_ratio > 0
    assert profile.estimated_tokens < 20


def test_two_columns_count_like_one_column_of_the_same_text(text_page: PageMaker) -> None:
    words = prose(6, 500)
    single = measure_ink(text_page(words))
    left = text_page(words[: len(words) // 2], size=(612, LETTER[1]), margin=40)
    right = text_page(words[len(words) // 2 :], size=(612, LETTER[1]), margin=40)
    spread = Image.new("RGB", LETTER, "white")
    spread.paste(left, (0, 0))
    spread.paste(right.crop((0, 13, 612, LETTER[1])), (612, 0))  # baselines deliberately misaligned

    double = measure_ink(spread)

    assert abs(double.estimated_tokens - single.estimated_tokens) <= 0.2 * single.estimated_tokens
