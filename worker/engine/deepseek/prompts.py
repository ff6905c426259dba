"""Prompts and prompt token ids, assembled exactly as the official DeepSeek-OCR processor does.

The reference builds ``BOS + ids(text before <image>) + N x <image> + ids(text after)``, each
text piece encoded without special tokens, with no chat template (Unlimited-OCR's processors do
the same). Doing the same here makes the ids independent of whatever post-processor (BOS
template or none) the tokenizer file carries. Prompt texts come from the family's profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tokenizers import Tokenizer

from worker.engine.base import PromptTask
from worker.engine.deepseek.checkpoint import CheckpointError
from worker.engine.deepseek.special_tokens import BOS, IMAGE, REQUIRED_SPECIAL_TOKENS
from worker.engine.profiles import DEEPSEEK_OCR

IMAGE_SLOT = IMAGE.text
PROMPTS: Mapping[PromptTask, str] = DEEPSEEK_OCR.prompts


def prompt_text(
    task: PromptTask, query: str | None = None, *, prompts: Mapping[PromptTask, str] = PROMPTS
) -> str:
    """The prompt for ``task``; ``query`` is the phrase to find and is required for LOCATE only."""
    template = prompts[task]
    if template.count(IMAGE_SLOT) != 1:
        raise ValueError(f"the {task} prompt must hold {IMAGE_SLOT} exactly once")
    if task is not PromptTask.LOCATE:
        return template
    if query is None or not query.strip():
        raise ValueError("the locate task needs a non-empty query")
    if any(token.text in query for token in REQUIRED_SPECIAL_TOKENS):
        raise ValueError("the locate query must not contain the model's special tokens")
    return template.replace("{query}", query)


class PromptTokenizer:
    """Turns prompts into the model's input ids and generated ids back into text."""

    def __init__(self, tokenizer: Tokenizer, prompts: Mapping[PromptTask, str] = PROMPTS) -> None:
        self._tokenizer = tokenizer
        self._prompts = prompts
        self._check_special_tokens()

    @classmethod
    def from_file(cls, path: Path, prompts: Mapping[PromptTask, str] = PROMPTS) -> PromptTokenizer:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:
            raise CheckpointError(f"{path} is not a readable tokenizer: {error}") from error
        return cls(tokenizer, prompts)

    @property
    def prompts(self) -> Mapping[PromptTask, str]:
        return self._prompts

    def encode_text(self, text: str) -> list[int]:
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def prompt_ids(self, task: PromptTask, placeholders: int, query: str | None = None) -> list[int]:
        """BOS, the text before the image, ``placeholders`` image ids, then the text after it."""
        before, after = prompt_text(task, query, prompts=self._prompts).split(IMAGE_SLOT)
        return [BOS.id, *self.encode_text(before), *([IMAGE.id] * placeholders), *self.encode_text(after)]

    def decode(self, ids: list[int]) -> str:
        """The text of generated ids, keeping grounding tokens such as ``<|ref|>`` in place."""
        text: str = self._tokenizer.decode(ids, skip_special_tokens=False)
        return text

    def _check_special_tokens(self) -> None:
        wrong = {
            token.text: found
            for token in REQUIRED_SPECIAL_TOKENS
            if (found := self._tokenizer.token_to_id(token.text)) != token.id
        }
        if wrong:
            details = ", ".join(f"{text} -> {found}" for text, found in wrong.items())
            raise CheckpointError(
                f"the tokenizer is not DeepSeek-OCR's family's: special tokens at unexpected ids ({details})"
            )
