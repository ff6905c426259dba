from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from scriptorium.modes import MODE_ORDER, Mode, token_geometry
from tests.unit.engine_model.conftest import EngineFactory
from worker.engine.base import (
    BatchPageFailures,
    Engine,
    EngineFatal,
    PageFailed,
    PageInput,
    PageResult,
    PromptTask,
)
from worker.engine.deepseek import engine as engine_module
from worker.engine.deepseek import generation as generation_module
from worker.engine.deepseek.engine import synthetic_page
from worker.engine.deepseek.generation import GenerationRequest, build_inputs
from worker.engine.deepseek.loader import LoadedModel
from worker.engine.deepseek.preprocess import prepare_image
from worker.engine.deepseek.special_tokens import BOS, EOS, PAD

A4 = (1191, 1684)


def prompt_text_tokens(engine_or_model: Any) -> int:
    """Ids of the markdown prompt around the placeholders (one id per byte in the tiny tokenizer)."""
    loaded = getattr(engine_or_model, "loaded", engine_or_model)
    before, after = loaded.profile.prompts[PromptTask.MARKDOWN].split("<image>")
    return len(loaded.tokenizer.encode_text(before)) + len(loaded.tokenizer.encode_text(after))


def page(page_no: int, mode: Mode, size: tuple[int, int] = A4, **kwargs: Any) -> PageInput:
    return PageInput(page_no=page_no, image=synthetic_page(*size), mode=mode, **kwargs)


def test_engine_fulfils_the_contract(make_engine: EngineFactory, tiny_model: LoadedModel) -> None:
    engine = make_engine()
    assert isinstance(engine, Engine)
    assert engine.revision == tiny_model.revision
    engine.warmup()


@pytest.mark.parametrize("mode", MODE_ORDER)
def test_every_mode_reads_with_the_exact_token_geometry(make_engine: EngineFactory, mode: Mode) -> None:
    engine = make_engine(max_new_tokens=6)
    [result] = engine.run([page(3, mode)])
    geometry = token_geometry(mode, *A4)

    assert result.page_no == 3
    assert result.mode is mode
    assert result.grid == geometry.grid
    assert result.tokens.vision == geometry.vision_features
    assert result.tokens.placeholders == geometry.placeholders
    assert result.tokens.valid == geometry.valid
    # BOS + placeholders + the family's markdown prompt text
    assert result.tokens.prompt == 1 + geometry.placeholders + prompt_text_tokens(engine)
    assert result.tokens.output == 6
    assert result.model_revision == engine.revision
    assert result.model == engine.loaded.profile.family.value
    assert result.engine_seconds > 0
    assert result.finished is False


def test_the_first_id_fed_is_bos_and_padding_is_on_the_left(tiny_model: LoadedModel) -> None:
    short = prepare_image(synthetic_page(500, 500), Mode.GUNDAM)  # no tiles
    tall = prepare_image(synthetic_page(*A4), Mode.GUNDAM)  # 2 x 3 tiles
    tokenizer = tiny_model.tokenizer
    requests = [
        GenerationRequest(tokenizer.prompt_ids(PromptTask.MARKDOWN, image.geometry.placeholders), image, 4)
        for image in (tall, short)
    ]
    inputs = build_inputs(requests, device=torch.device("cpu"), dtype=torch.float32)
    padding = len(requests[0].prompt_ids) - len(requests[1].prompt_ids)

    assert padding == 903 - 273
    assert int(inputs.input_ids[0, 0]) == BOS.id
    assert inputs.input_ids[1, :padding].eq(PAD.id).all()
    assert int(inputs.input_ids[1, padding]) == BOS.id
    assert inputs.attention_mask[1, :padding].eq(0).all()
    assert inputs.attention_mask[1, padding:].eq(1).all()
    assert inputs.attention_mask[0].eq(1).all()
    assert inputs.num_local_patches == [6, 0]
    assert inputs.patches_grid == [[2, 3], [0, 0]]
    assert inputs.pixel_values_local is not None
    assert torch.equal(inputs.pixel_values_local, tall.tiles)


def test_output_is_bounded_by_max_new_tokens(make_engine: EngineFactory) -> None:
    [result] = make_engine(max_new_tokens=9).run([page(1, Mode.TINY)])
    assert result.tokens.output == 9
    assert result.finished is False


def test_output_is_bounded_by_the_context(make_engine: EngineFactory, tiny_model: LoadedModel) -> None:
    prompt = 1 + 73 + prompt_text_tokens(tiny_model)
    [result] = make_engine(max_context=prompt + 4).run([page(1, Mode.TINY)])
    assert result.tokens.output == 4
    assert result.tokens.prompt + result.tokens.output == prompt + 4


def test_a_prompt_that_fills_the_context_fails_only_its_page(make_engine: EngineFactory) -> None:
    engine = make_engine(max_context=200, max_new_tokens=4)
    outcomes = engine.run_outcomes([page(1, Mode.TINY), page(2, Mode.BASE)])
    assert isinstance(outcomes[0], PageResult)
    assert isinstance(outcomes[1], PageFailed)
    assert outcomes[1].page_no == 2
    assert "context" in outcomes[1].message


def test_reaching_eos_finishes_the_page_and_counts_the_eos(
    make_engine: EngineFactory, tiny_model: LoadedModel
) -> None:
    def prefer_eos(module: Any, inputs: Any, logits: torch.Tensor) -> torch.Tensor:
        boosted = logits.clone()
        boosted[..., EOS.id] += 1e4
        return boosted

    hook = tiny_model.model.lm_head.register_forward_hook(prefer_eos)
    try:
        [result] = make_engine(max_new_tokens=20).run([page(1, Mode.SMALL)])
    finally:
        hook.remove()
    assert result.finished is True
    assert result.tokens.output == 1
    assert result.raw_output == ""
    assert result.markdown == ""


def test_locate_reads_with_the_query_in_the_prompt(make_engine: EngineFactory) -> None:
    engine = make_engine(max_new_tokens=3)
    [plain, located] = engine.run(
        [page(1, Mode.TINY), page(2, Mode.TINY, task=PromptTask.LOCATE, query="the title")]
    )
    locate_text = "\nLocate <|ref|>the title<|/ref|> in the image."
    assert located.tokens.prompt == 1 + 73 + len(engine.loaded.tokenizer.encode_text(locate_text))
    assert located.tokens.prompt != plain.tokens.prompt


def test_the_guard_marks_repetition(make_engine: EngineFactory) -> None:
    [guarded] = make_engine(max_new_tokens=60, ngram_size=2, ngram_window=60).run([page(1, Mode.TINY)])
    assert guarded.repetition is True


def test_one_bad_page_fails_alone(make_engine: EngineFactory) -> None:
    engine = make_engine(max_new_tokens=4)
    pages = [page(1, Mode.TINY), page(2, Mode.TINY, task=PromptTask.LOCATE), page(3, Mode.TINY)]

    outcomes = engine.run_outcomes(pages)
    assert [type(outcome) for outcome in outcomes] == [PageResult, PageFailed, PageResult]
    assert outcomes[1].page_no == 2

    with pytest.raises(BatchPageFailures) as failure:
        engine.run(pages)
    assert failure.value.page_no == 2
    assert isinstance(failure.value, PageFailed)
    assert [outcome.page_no for outcome in failure.value.outcomes] == [1, 2, 3]


def test_an_error_in_a_batch_is_narrowed_to_its_page(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = generation_module.generate_batch

    def fails_on_the_second_page(model: Any, requests: Sequence[GenerationRequest], **kwargs: Any) -> Any:
        if any(request.image.geometry.width == 777 for request in requests):
            raise ValueError("bad page")
        return real(model, requests, **kwargs)

    monkeypatch.setattr(engine_module, "generate_batch", fails_on_the_second_page)
    outcomes = make_engine(max_new_tokens=3).run_outcomes(
        [page(1, Mode.TINY), page(2, Mode.TINY, size=(777, 900)), page(3, Mode.TINY)]
    )
    assert [type(outcome) for outcome in outcomes] == [PageResult, PageFailed, PageResult]
    failure = outcomes[1]
    assert isinstance(failure, PageFailed)
    assert "bad page" in failure.message


def test_out_of_memory_halves_the_batch(make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    real = generation_module.generate_batch
    sizes: list[int] = []

    def small_device(model: Any, requests: Sequence[GenerationRequest], **kwargs: Any) -> Any:
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, requests, **kwargs)

    monkeypatch.setattr(engine_module, "generate_batch", small_device)
    results = make_engine(max_new_tokens=3, max_batch_pages=8).run([page(n, Mode.TINY) for n in range(1, 6)])
    assert [result.page_no for result in results] == [1, 2, 3, 4, 5]
    assert sizes == [5, 2, 3, 1, 2]


def test_out_of_memory_on_a_single_page_fails_that_page(
    make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(model: Any, requests: Sequence[GenerationRequest], **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine_module, "generate_batch", no_memory)
    [outcome] = make_engine().run_outcomes([page(1, Mode.TINY)])
    assert isinstance(outcome, PageFailed)
    assert "memory" in outcome.message


def test_a_poisoned_device_is_fatal(make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    def device_assert(model: Any, requests: Sequence[GenerationRequest], **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(engine_module, "generate_batch", device_assert)
    with pytest.raises(EngineFatal, match="device-side assert"):
        make_engine().run([page(1, Mode.TINY), page(2, Mode.TINY)])


@pytest.mark.parametrize(("ngram_size", "window"), [(1, 50), (-3, 50), (20, 0)])
def test_a_meaningless_guard_setting_is_refused_at_start(
    make_engine: EngineFactory, ngram_size: int, window: int
) -> None:
    with pytest.raises(ValueError, match="no-repeat guard"):
        make_engine(ngram_size=ngram_size, ngram_window=window)


def test_the_guard_can_be_turned_off(make_engine: EngineFactory) -> None:
    [result] = make_engine(max_new_tokens=60, ngram_size=0).run([page(1, Mode.TINY)])
    assert result.tokens.output == 60


def test_unset_settings_take_the_family_profile(make_engine: EngineFactory, tiny_model: LoadedModel) -> None:
    profile = tiny_model.profile
    engine = make_engine()
    assert engine.max_context == profile.context_length
    assert (engine.guard.ngram_size, engine.guard.window_size, engine.guard.whitelist) == (
        profile.repetition.ngram_size,
        profile.repetition.window,
        profile.repetition.whitelist,
    )
    overridden = make_engine(ngram_size=7, ngram_window=21, ngram_whitelist=[5])
    assert (overridden.guard.ngram_size, overridden.guard.window_size, overridden.guard.whitelist) == (
        7,
        21,
        (5,),
    )


def test_pages_prepared_ahead_read_exactly_as_pages_prepared_in_the_call(make_engine: EngineFactory) -> None:
    engine = make_engine(max_new_tokens=5)
    pages = [page(1, Mode.GUNDAM), page(2, Mode.SMALL), page(3, Mode.BASE, size=(900, 600))]
    ahead = [engine.preprocess(p) for p in pages]
    assert all(p.prepared is not None for p in ahead)
    direct, prepared = engine.run(pages), engine.run(ahead)
    for one, other in zip(direct, prepared, strict=True):
        assert (one.raw_output, one.tokens, one.grid) == (other.raw_output, other.tokens, other.grid)


def test_a_page_prepared_for_another_mode_is_prepared_again(make_engine: EngineFactory) -> None:
    engine = make_engine(max_new_tokens=3)
    ahead = engine.preprocess(page(1, Mode.TINY))
    [escalated] = engine.run([PageInput(1, ahead.image, Mode.LARGE, prepared=ahead.prepared)])
    assert escalated.tokens.vision == token_geometry(Mode.LARGE, *A4).vision_features


def test_a_page_that_cannot_be_prepared_comes_back_unchanged_and_fails_in_the_call(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(max_new_tokens=3)
    unreadable = page(2, Mode.TINY, task=PromptTask.LOCATE)  # no query to locate
    assert engine.preprocess(unreadable) is unreadable
    with pytest.raises(PageFailed):
        engine.run([unreadable])
