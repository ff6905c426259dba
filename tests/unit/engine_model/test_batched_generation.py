from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from scriptorium.modes import MODE_ORDER, Mode
from tests.unit.engine_model.conftest import EngineFactory
from worker.engine.base import PageInput, PageResult, PromptTask
from worker.engine.deepseek import engine as engine_module
from worker.engine.deepseek.engine import synthetic_page
from worker.engine.deepseek.generation import GenerationRequest, RepetitionGuard, build_inputs, generate_batch
from worker.engine.deepseek.loader import LoadedModel
from worker.engine.deepseek.preprocess import prepare_image
from worker.engine.deepseek.special_tokens import IMAGE

# Sizes that give every mode different content, and gundam three different tilings (2x3, none, 3x1).
PAGE_SIZES = ((1191, 1684), (600, 520), (1920, 700))
GUARD = RepetitionGuard(ngram_size=4, window_size=30, whitelist=(128821, 128822))


def requests_for(model: LoadedModel, mode: Mode) -> list[GenerationRequest]:
    requests = []
    for index, size in enumerate(PAGE_SIZES):
        image = prepare_image(synthetic_page(*size), mode)
        task = (PromptTask.MARKDOWN, PromptTask.FREE_OCR, PromptTask.FIGURE)[index]
        prompt = model.tokenizer.prompt_ids(task, image.geometry.placeholders)
        requests.append(GenerationRequest(prompt, image, 16 + 4 * index))
    return requests


@pytest.mark.parametrize("mode", MODE_ORDER)
def test_a_batch_generates_what_each_page_generates_alone(tiny_model: LoadedModel, mode: Mode) -> None:
    requests = requests_for(tiny_model, mode)
    assert len({len(request.prompt_ids) for request in requests}) == len(requests)  # real left padding

    def run(batch: list[GenerationRequest]) -> list[Any]:
        return generate_batch(
            tiny_model.model, batch, guard=GUARD, device=tiny_model.device, dtype=tiny_model.dtype
        )

    together = run(requests)
    alone = [run([request])[0] for request in requests]
    assert together == alone
    assert [len(sequence.token_ids) for sequence in together] == [16, 20, 24]


def test_the_engine_gives_the_same_results_batched_or_one_by_one(make_engine: EngineFactory) -> None:
    pages = [
        PageInput(page_no=number, image=synthetic_page(*size), mode=mode)
        for number, (mode, size) in enumerate(
            [
                (Mode.GUNDAM, PAGE_SIZES[0]),
                (Mode.TINY, PAGE_SIZES[1]),
                (Mode.GUNDAM, PAGE_SIZES[2]),
                (Mode.TINY, PAGE_SIZES[0]),
                (Mode.GUNDAM, PAGE_SIZES[1]),
            ],
            start=1,
        )
    ]
    batched = make_engine(max_new_tokens=12, max_batch_pages=8).run(pages)
    single = make_engine(max_new_tokens=12, max_batch_pages=1).run(pages)

    def comparable(result: PageResult) -> PageResult:
        return replace(result, engine_seconds=0.0)

    assert [comparable(result) for result in batched] == [comparable(result) for result in single]
    assert [result.page_no for result in batched] == [1, 2, 3, 4, 5]


def test_image_features_fill_the_placeholders_in_order(tiny_model: LoadedModel) -> None:
    model = tiny_model.model
    requests = requests_for(tiny_model, Mode.GUNDAM)[:2]  # a 2x3 tiled page and an untiled one
    inputs = build_inputs(requests, device=tiny_model.device, dtype=tiny_model.dtype)
    captured: dict[str, torch.Tensor] = {}

    def capture(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        captured["embeds"] = kwargs["inputs_embeds"].detach().clone()

    hook = model.model.language_model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.inference_mode():
            model(**inputs.as_kwargs())
            features = model.model.get_image_features(
                inputs.pixel_values, inputs.pixel_values_local, inputs.num_local_patches, inputs.patches_grid
            ).pooler_output
    finally:
        hook.remove()
    embed_tokens = model.model.language_model.embed_tokens.weight
    newline, separator = model.model.image_newline, model.model.view_separator
    for row, request in enumerate(requests):
        ids = inputs.input_ids[row]
        at_image = ids == IMAGE.id
        sequence = captured["embeds"][row][at_image]
        assert torch.equal(sequence, features[row])
        assert torch.equal(captured["embeds"][row][~at_image], embed_tokens[ids[~at_image]])
        newline_rows = [index for index in range(len(sequence)) if torch.equal(sequence[index], newline)]
        geometry = request.image.geometry
        tile_rows = 10 * geometry.grid[1] if geometry.grid else 0
        assert len(newline_rows) == tile_rows + 16
        assert torch.equal(sequence[-1], separator)
        assert len(sequence) == geometry.placeholders


def test_a_batch_equals_pages_alone_past_the_attention_window(tiny_model: LoadedModel) -> None:
    profile = tiny_model.profile
    new_tokens = (profile.attention_window or 64) + 24
    guard = RepetitionGuard(
        ngram_size=profile.repetition.ngram_size,
        window_size=profile.repetition.window,
        whitelist=profile.repetition.whitelist,
    )
    tokenizer = tiny_model.tokenizer
    images = [prepare_image(synthetic_page(*size), Mode.TINY) for size in PAGE_SIZES]
    requests = [
        GenerationRequest(
            tokenizer.prompt_ids(PromptTask.MARKDOWN, image.geometry.placeholders), image, new_tokens
        )
        for image in images
    ]  # one prompt length, as the engine batches reference-window pages

    def run(batch: list[GenerationRequest]) -> list[Any]:
        return generate_batch(
            tiny_model.model, batch, guard=guard, device=tiny_model.device, dtype=tiny_model.dtype
        )

    together = run(requests)
    assert together == [run([request])[0] for request in requests]
    assert max(len(sequence.token_ids) for sequence in together) == new_tokens


def test_the_engine_batches_reference_window_pages_only_without_padding(
    tiny_model: LoadedModel, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = tiny_model.profile.attention_window
    if window is not None:
        past_window = [
            replace(request, max_new_tokens=window + 1) for request in requests_for(tiny_model, Mode.GUNDAM)
        ]
        with pytest.raises(ValueError, match="different lengths"):
            generate_batch(
                tiny_model.model, past_window, guard=GUARD, device=tiny_model.device, dtype=tiny_model.dtype
            )
    sizes = (PAGE_SIZES[0], PAGE_SIZES[0], PAGE_SIZES[1])  # two prompt lengths
    pages = [
        PageInput(page_no=number, image=synthetic_page(*size), mode=Mode.GUNDAM)
        for number, size in enumerate(sizes, start=1)
    ]
    calls: list[int] = []
    original = engine_module.generate_batch

    def counting(model: Any, batch: list[GenerationRequest], **kwargs: Any) -> Any:
        calls.append(len(batch))
        return original(model, batch, **kwargs)

    monkeypatch.setattr(engine_module, "generate_batch", counting)
    make_engine(max_new_tokens=4, max_batch_pages=8).run(pages)
    assert sorted(calls) == ([1, 2] if window is not None else [3])
