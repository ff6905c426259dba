from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from scriptorium.modes import MODE_ORDER, Mode, token_geometry
from scriptorium.policy import RoutingPolicy
from scriptorium.settings import PrepareSettings
from tests.unit.routing.conftest import PageMaker, prose
from worker.prepare.render import render_pages
from worker.routing.decide import Source, decide, route_page
from worker.routing.facts import measure_page

SLIDE = (1440, 1080)


@pytest.fixture
def dense_page(text_page: PageMaker) -> Image.Image:
    return text_page(prose(11, 1400), font_size=14)


@pytest.fixture
def sparse_slide(text_page: PageMaker) -> Image.Image:
    title = "Quarterly results revenue up margins stable outlook"
    return text_page(title, size=SLIDE, font_size=48, margin=120)


def test_a_blank_page_is_skipped_without_gpu_work(blank_page: Image.Image) -> None:
    decision = route_page(blank_page, None, RoutingPolicy())

    assert decision.skipped
    assert decision.mode is None
    assert decision.vision_tokens == 0
    assert "blank" in decision.reason


def test_a_blank_page_is_skipped_even_under_a_fixed_mode(blank_page: Image.Image) -> None:
    assert route_page(blank_page, "", RoutingPolicy(mode="gundam")).skipped


def test_a_sparse_slide_goes_to_tiny_and_a_dense_page_far_higher(
    sparse_slide: Image.Image, dense_page: Image.Image
) -> None:
    slide = route_page(sparse_slide, None, RoutingPolicy())
    dense = route_page(dense_page, None, RoutingPolicy())

    assert slide.mode is Mode.TINY
    assert dense.mode is not None
    assert dense.mode.rank >= Mode.BASE.rank
    assert dense.predicted_text_tokens > 10 * slide.predicted_text_tokens
    assert dense.source is Source.PIXELS


def test_the_chosen_mode_is_the_cheapest_within_the_target_ratio(dense_page: Image.Image) -> None:
    facts = measure_page(dense_page, None)
    decision = decide(facts, RoutingPolicy())
    assert decision.mode is not None and decision.predicted_ratio is not None

    planned = decision.predicted_text_tokens * 1.25  # pixel headroom
    assert planned <= 10 * decision.valid_tokens
    for cheaper in MODE_ORDER[: decision.mode.rank]:
        assert planned > 10 * token_geometry(cheaper, facts.width, facts.height).valid
    assert decision.vision_tokens == token_geometry(decision.mode, facts.width, facts.height).vision_features


def test_a_looser_target_ratio_chooses_a_cheaper_mode(dense_page: Image.Image) -> None:
    facts = measure_page(dense_page, None)

    strict = decide(facts, RoutingPolicy(target_ratio=6))
    loose = decide(facts, RoutingPolicy(target_ratio=25))

    assert strict.mode is not None and loose.mode is not None
    assert loose.mode.rank < strict.mode.rank


def test_min_mode_raises_and_max_mode_caps_the_choice(
    sparse_slide: Image.Image, dense_page: Image.Image
) -> None:
    raised = route_page(sparse_slide, None, RoutingPolicy(min_mode=Mode.BASE))
    capped = route_page(dense_page, None, RoutingPolicy(max_mode=Mode.SMALL))

    assert raised.mode is Mode.BASE
    assert "min_mode" in raised.reason
    assert capped.mode is Mode.SMALL
    assert "max_mode" in capped.reason


def test_a_fixed_mode_is_used_whatever_the_page_holds(sparse_slide: Image.Image) -> None:
    decision = route_page(sparse_slide, None, RoutingPolicy(mode="large"))

    assert decision.mode is Mode.LARGE
    assert "fixed mode large" in decision.reason


def test_gundam_cost_follows_the_tile_grid_of_the_page(dense_page: Image.Image) -> None:
    decision = route_page(dense_page, None, RoutingPolicy(mode="gundam"), max_crops=6)

    assert decision.geometry is not None
    assert decision.geometry.grid == (2, 3)
    assert decision.vision_tokens == 256 + 6 * 100
    assert decision.placeholders == 903


def test_an_agreeing_text_layer_is_the_count_used(text_page: PageMaker) -> None:
    words = prose(12, 500)
    decision = route_page(text_page(words), words, RoutingPolicy())

    assert decision.source is Source.TEXT_LAYER
    assert decision.predicted_text_tokens == decision.facts.layer_tokens
    assert "ink agrees" in decision.reason


def test_an_image_only_page_with_an_empty_text_layer_is_read_from_its_ink(dense_page: Image.Image) -> None:
    decision = route_page(dense_page, "", RoutingPolicy())

    assert decision.source is Source.PIXELS
    assert decision.predicted_text_tokens > 500
    assert "text layer empty" in decision.reason


def test_a_text_layer_far_smaller_than_the_ink_is_overruled(dense_page: Image.Image) -> None:
    decision = route_page(dense_page, "Page 7", RoutingPolicy())

    assert decision.source is Source.PIXELS
    assert decision.predicted_text_tokens == decision.facts.pixel_tokens
    assert "holds only" in decision.reason


def test_a_text_layer_far_larger_than_the_ink_is_overruled(sparse_slide: Image.Image) -> None:
    hidden = prose(13, 2000)  # an invisible OCR layer of a whole other page

    decision = route_page(sparse_slide, hidden, RoutingPolicy())

    assert decision.source is Source.PIXELS
    assert decision.mode is Mode.TINY
    assert "does not show" in decision.reason


def test_a_garbled_text_layer_is_ignored(dense_page: Image.Image) -> None:
    decision = route_page(dense_page, "\ufffd\ue000\x01" * 300, RoutingPolicy())

    assert decision.source is Source.PIXELS
    assert "garbled" in decision.reason


def test_vector_text_without_a_layer_is_read_not_skipped(corpus: Path) -> None:
    page = next(render_pages(corpus / "bad-input" / "odd" / "vector.pdf", PrepareSettings()))

    decision = route_page(page.image, page.text_layer, RoutingPolicy())

    assert page.text_layer == ""
    assert not decision.skipped
    assert decision.source is Source.PIXELS
    assert decision.predicted_text_tokens > 20


def test_a_blank_pdf_page_from_the_corpus_is_skipped(corpus: Path) -> None:
    page = next(render_pages(corpus / "bad-input" / "odd" / "blank.pdf", PrepareSettings()))

    assert route_page(page.image, page.text_layer, RoutingPolicy()).skipped


def test_the_stored_decision_is_plain_json(dense_page: Image.Image) -> None:
    stored = json.loads(json.dumps(route_page(dense_page, "", RoutingPolicy()).as_dict()))

    assert stored["mode"] in {mode.value for mode in Mode}
    assert stored["source"] == "pixels"
    assert stored["facts"]["text_layer"]["chars"] == 0
    assert stored["facts"]["ink"]["text_lines"] > 20
    expected = {"predicted_text_tokens", "vision_tokens", "valid_tokens", "placeholders", "reason", "grid"}
    assert expected <= stored.keys()
