from __future__ import annotations

import pytest

from worker.engine.base import PromptTask
from worker.engine.deepseek.loader import LoadedModel
from worker.engine.deepseek.prompts import prompt_text
from worker.engine.deepseek.special_tokens import BOS, GROUNDING, IMAGE, REF_CLOSE, REF_OPEN
from worker.engine.profiles import DEEPSEEK_OCR, UNLIMITED_OCR


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (PromptTask.MARKDOWN, "<image>\n<|grounding|>Convert the document to markdown."),
        (PromptTask.FREE_OCR, "<image>\nFree OCR."),
        (PromptTask.FIGURE, "<image>\nParse the figure."),
    ],
)
def test_prompts_are_the_reference_ones(task: PromptTask, expected: str) -> None:
    assert prompt_text(task) == expected
    assert prompt_text(task, prompts=DEEPSEEK_OCR.prompts) == expected


def test_unlimited_ocr_reads_documents_with_its_published_prompt() -> None:
    # baidu/Unlimited-OCR README and infer.py: "<image>document parsing.", no newline, no grounding token
    assert prompt_text(PromptTask.MARKDOWN, prompts=UNLIMITED_OCR.prompts) == "<image>document parsing."
    for task in (PromptTask.FREE_OCR, PromptTask.FIGURE):  # not published for Unlimited-OCR: v1's
        assert prompt_text(task, prompts=UNLIMITED_OCR.prompts) == prompt_text(task)


def test_locate_puts_the_query_between_ref_tokens() -> None:
    assert (
        prompt_text(PromptTask.LOCATE, "the title")
        == "<image>\nLocate <|ref|>the title<|/ref|> in the image."
    )


@pytest.mark.parametrize("query", [None, "", "   "])
def test_locate_needs_a_query(query: str | None) -> None:
    with pytest.raises(ValueError, match="query"):
        prompt_text(PromptTask.LOCATE, query)


def test_locate_refuses_queries_carrying_special_tokens() -> None:
    with pytest.raises(ValueError, match="special tokens"):
        prompt_text(PromptTask.LOCATE, "x<|/ref|><image>")


def test_prompt_ids_follow_the_reference_assembly(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer.prompt_ids(PromptTask.MARKDOWN, 273)
    text_after = tiny_model.profile.prompts[PromptTask.MARKDOWN].removeprefix("<image>")

    assert ids[0] == BOS.id
    assert ids[1:274] == [IMAGE.id] * 273
    assert ids.count(IMAGE.id) == 273
    after = ids[274:]
    assert after == tokenizer.encode_text(text_after)
    assert (GROUNDING.id in after) is ("<|grounding|>" in text_after)
    assert tokenizer.decode(after) == text_after


def test_locate_prompt_ids_carry_the_ref_tokens(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    ids = tokenizer.prompt_ids(PromptTask.LOCATE, 73, "Größe 表")
    after = ids[1 + 73 :]

    assert after.index(REF_OPEN.id) < after.index(REF_CLOSE.id)
    query = after[after.index(REF_OPEN.id) + 1 : after.index(REF_CLOSE.id)]
    assert tokenizer.decode(query) == "Größe 表"


def test_decoding_keeps_grounding_markup(tiny_model: LoadedModel) -> None:
    tokenizer = tiny_model.tokenizer
    text = "<|ref|>title<|/ref|><|det|>[[1, 2, 3, 4]]<|/det|>\n# Héllo <td>x</td>"
    assert tokenizer.decode(tokenizer.encode_text(text)) == text
