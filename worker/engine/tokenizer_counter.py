"""Counting text tokens with the model's own tokenizer, for routing when the model directory is at hand.

The routing estimates in :mod:`worker.routing.tokens` work without the model; this counter is the
exact one. It lives in the engine package because only the engine imports the model's libraries
(``tokenizers`` here, from the ``engine`` extra), and it loads nothing until the first count.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

# Table tags DeepSeek-OCR emits as single special tokens; the V3 BPE alone would split them.
OCR_ADDED_TOKENS: tuple[str, ...] = ("<td>", "</td>", "<tr>", "</tr>")


class TokenizerCounter:
    """The model's own tokenizer (``tokenizer.json`` in the model directory), loaded on first use.

    Needs the ``tokenizers`` package (the ``engine`` extra); nothing is loaded until ``count``.
    """

    def __init__(self, model_dir: Path, *, added_tokens: Sequence[str] = OCR_ADDED_TOKENS) -> None:
        self._path = Path(model_dir) / "tokenizer.json"
        if not self._path.is_file():
            raise FileNotFoundError(f"no tokenizer.json in {model_dir}")
        self._added_tokens = tuple(added_tokens)

    @property
    def name(self) -> str:
        return "tokenizer"

    @cached_property
    def _tokenizer(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self._path))
        added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
        missing = [token for token in self._added_tokens if token not in added]
        if missing:
            tokenizer.add_special_tokens(missing)
        return tokenizer

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
