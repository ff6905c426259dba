"""Our engine path against transformers' own reading of the published checkpoint, same weights.

The reference is built only from transformers and the checkpoint files: ``UnlimitedOcrConfig``
reads the published ``language_config`` (and Unlimited-OCR's top-level ``sliding_window``) the
way transformers does, the weights are loaded by ``from_pretrained`` through its conversion
mapping, prompt ids are assembled here from the tokenizer file and the family's published
prompt, and ``generate`` runs one page at a time. Only the vision widths are passed in as ours
(transformers has no reader for ``vision_config.width``; the tiny widths are not its defaults),
and DeepSeek-OCR is given full attention, the reading the parity notes establish for v1.

Our path is the engine: config translation, loader, preprocessing, prompt assembly, left-padded
batches of pages with different prompt lengths, and the stop rules. Both greedy, guard off.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer

from scriptorium.modes import Mode
from tests.unit.engine_model.conftest import EngineFactory
from worker.engine.base import PageInput, PromptTask
from worker.engine.deepseek.engine import synthetic_page
from worker.engine.deepseek.loader import LoadedModel
from worker.engine.deepseek.preprocess import prepare_image
from worker.engine.profiles import ModelProfile

PAGES = ((Mode.GUNDAM, (1191, 1684)), (Mode.GUNDAM, (600, 520)))  # one call, 630 ids of left padding

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_model(tiny_checkpoint: Path, tiny_model: LoadedModel, profile: ModelProfile) -> Any:
    from transformers import UnlimitedOcrConfig, UnlimitedOcrForConditionalGeneration

    published = json.loads((tiny_checkpoint / "config.json").read_text())
    language = dict(published["language_config"])
    if profile.attention_window is None:
        language["layer_types"] = ["full_attention"] * language["num_hidden_layers"]
    extra = {} if "sliding_window" not in published else {"sliding_window": published["sliding_window"]}
    ours = tiny_model.model.config
    config = UnlimitedOcrConfig(
        language_config=language,
        vision_config=ours.vision_config.to_dict(),
        image_token_id=128815,
        **extra,
    )
    model = UnlimitedOcrForConditionalGeneration.from_pretrained(
        str(tiny_checkpoint), config=config, dtype=torch.float32
    )
    return model.eval()


def reference_prompt_ids(tokenizer: Tokenizer, profile: ModelProfile, placeholders: int) -> list[int]:
    before, after = profile.prompts[PromptTask.MARKDOWN].split("<image>")
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids  # noqa: E731
    return [0, *encode(before), *([128815] * placeholders), *encode(after)]


def test_the_reference_reads_the_published_attention(reference_model: Any, profile: ModelProfile) -> None:
    text = reference_model.config.text_config
    if profile.attention_window is None:
        assert set(text.layer_types) == {"full_attention"}
    else:
        assert set(text.layer_types) == {"reference_sliding_attention"}
        assert text.sliding_window == profile.attention_window


def test_the_engine_reads_pages_as_the_reference_does(
    reference_model: Any, make_engine: EngineFactory, tiny_checkpoint: Path, profile: ModelProfile
) -> None:
    new_tokens = (profile.attention_window or 0) + 24  # past Unlimited-OCR's window
    engine = make_engine(max_new_tokens=new_tokens, ngram_size=0, max_batch_pages=8)
    pages = [
        PageInput(page_no=number, image=synthetic_page(*size), mode=mode)
        for number, (mode, size) in enumerate(PAGES, start=1)
    ]
    results = engine.run(pages)
    tokenizer = Tokenizer.from_file(str(tiny_checkpoint / "tokenizer.json"))
    for page, result in zip(pages, results, strict=True):
        image = prepare_image(page.image, page.mode)
        ids = torch.tensor([reference_prompt_ids(tokenizer, profile, image.geometry.placeholders)])
        tiled = image.tiles.shape[0] > 0
        with torch.inference_mode():
            output = reference_model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                pixel_values=image.global_view[None],
                pixel_values_local=image.tiles if tiled else None,
                num_local_patches=[int(image.tiles.shape[0])] if tiled else None,
                patches_grid=[list(image.geometry.grid)] if tiled and image.geometry.grid else None,
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=1,
                pad_token_id=2,
            )[0, ids.shape[1] :].tolist()
        if 1 in output:
            output = output[: output.index(1) + 1]
        assert result.tokens.prompt == ids.shape[1]
        assert result.tokens.output == len(output)
        assert result.raw_output == tokenizer.decode(
            [token for token in output if token != 1], skip_special_tokens=False
        )
    assert max(result.tokens.output for result in results) == new_tokens  # the comparison ran the whole way
