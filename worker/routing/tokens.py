"""Counting DeepSeek text tokens in a text layer: the script mix, calibrated rates, or the real tokenizer.

DeepSeek-OCR's tokenizer is the DeepSeek-V3 byte-level BPE (128k merges) plus the OCR special
tokens. Its cost per character differs a lot by script: an English letter is about a quarter of
a token, a Chinese character about 0.6, a Hangul syllable about 0.9. Without the model
directory the :class:`CalibratedRateCounter` prices each character by its class; given the
model directory, :class:`TokenizerCounter` runs the real tokenizer.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

from worker.engine.tokenizer_counter import TokenizerCounter


class CharClass(StrEnum):
    LATIN = "latin"
    DIGIT = "digit"
    PUNCT = "punct"
    HAN = "han"
    KANA = "kana"
    HANGUL = "hangul"
    OTHER = "other"  # letters of other scripts: Cyrillic, Greek, Arabic, Hebrew, Devanagari …
    NEWLINE = "newline"
    SPACE = "space"


# Tokens per character, DeepSeek-V3 tokenizer. Latin, digits, punctuation, Hangul, other scripts
# and newlines were measured on the text layers of corpus/pdf-real (151 pages, none of them in the
# routing evaluation); Han follows DeepSeek's published 0.6 per Chinese character, raised to 0.7
# for the short Han runs inside Japanese; kana measured on the Japanese slides.
DEFAULT_RATES: dict[CharClass, float] = {
    CharClass.LATIN: 0.25,
    CharClass.DIGIT: 0.5,
    CharClass.PUNCT: 0.9,
    CharClass.HAN: 0.7,
    CharClass.KANA: 1.0,
    CharClass.HANGUL: 0.9,
    CharClass.OTHER: 0.45,
    CharClass.NEWLINE: 0.45,
    CharClass.SPACE: 0.0,
}

_CJK_CLASSES = (CharClass.HAN, CharClass.KANA, CharClass.HANGUL)


_CJK_BLOCKS: tuple[tuple[int, int, CharClass], ...] = (
    (0x3040, 0x30FF, CharClass.KANA),  # hiragana, katakana
    (0x31F0, 0x31FF, CharClass.KANA),
    (0xFF66, 0xFF9F, CharClass.KANA),  # half-width katakana
    (0x4E00, 0x9FFF, CharClass.HAN),
    (0x3400, 0x4DBF, CharClass.HAN),
    (0xF900, 0xFAFF, CharClass.HAN),
    (0x20000, 0x3FFFF, CharClass.HAN),
    (0xAC00, 0xD7AF, CharClass.HANGUL),
    (0x1100, 0x11FF, CharClass.HANGUL),
    (0x3130, 0x318F, CharClass.HANGUL),
)


def classify(char: str) -> CharClass:
    if char.isspace():
        return CharClass.NEWLINE if char == "\n" else CharClass.SPACE
    code = ord(char)
    for first, last, char_class in _CJK_BLOCKS:
        if first <= code <= last:
            return char_class
    if char.isdigit():
        return CharClass.DIGIT
    if unicodedata.category(char)[0] not in "LM":
        return CharClass.PUNCT
    return CharClass.LATIN if unicodedata.name(char, "").startswith("LATIN") else CharClass.OTHER


@dataclass(frozen=True)
class ScriptMix:
    """Character counts of a text by class; whitespace is not counted in ``chars``."""

    counts: dict[CharClass, int]

    @classmethod
    def of(cls, text: str) -> ScriptMix:
        counts = dict.fromkeys(CharClass, 0)
        for char, n in Counter(text).items():
            counts[classify(char)] += n
        return cls(counts)

    @property
    def chars(self) -> int:
        blank = (CharClass.SPACE, CharClass.NEWLINE)
        return sum(n for char_class, n in self.counts.items() if char_class not in blank)

    @property
    def cjk(self) -> int:
        return sum(self.counts[char_class] for char_class in _CJK_CLASSES)

    @property
    def latin(self) -> int:
        return self.counts[CharClass.LATIN] + self.counts[CharClass.DIGIT]

    @property
    def other(self) -> int:
        return self.counts[CharClass.OTHER]

    def share(self, amount: int) -> float:
        return round(amount / self.chars, 3) if self.chars else 0.0


@runtime_checkable
class TokenCounter(Protocol):
    @property
    def name(self) -> str:
        """Recorded with the facts: which counter produced the number."""
        ...

    def count(self, text: str) -> int: ...


class CalibratedRateCounter:
    """Tokens ≈ Σ characters × the rate of their class (see :data:`DEFAULT_RATES`)."""

    def __init__(self, rates: dict[CharClass, float] | None = None) -> None:
        self._rates = dict(DEFAULT_RATES if rates is None else rates)

    @property
    def name(self) -> str:
        return "rates"

    def count(self, text: str) -> int:
        return self.count_mix(ScriptMix.of(text))

    def count_mix(self, mix: ScriptMix) -> int:
        return round(sum(self._rates[char_class] * n for char_class, n in mix.counts.items()))


def token_counter(model_dir: Path | None) -> TokenCounter:
    """The real tokenizer when a model directory is given, the calibrated rates otherwise."""
    return CalibratedRateCounter() if model_dir is None else TokenizerCounter(model_dir)
