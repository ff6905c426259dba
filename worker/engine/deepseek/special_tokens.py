"""The DeepSeek-OCR special tokens the engine depends on, with their ids in the released tokenizer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecialToken:
    text: str
    id: int


BOS = SpecialToken("<｜begin▁of▁sentence｜>", 0)
EOS = SpecialToken("<｜end▁of▁sentence｜>", 1)
PAD = SpecialToken("<｜▁pad▁｜>", 2)
IMAGE = SpecialToken("<image>", 128815)
REF_OPEN = SpecialToken("<|ref|>", 128816)
REF_CLOSE = SpecialToken("<|/ref|>", 128817)
DET_OPEN = SpecialToken("<|det|>", 128818)
DET_CLOSE = SpecialToken("<|/det|>", 128819)
GROUNDING = SpecialToken("<|grounding|>", 128820)
TABLE_CELL_OPEN = SpecialToken("<td>", 128821)
TABLE_CELL_CLOSE = SpecialToken("</td>", 128822)

REQUIRED_SPECIAL_TOKENS: tuple[SpecialToken, ...] = (
    BOS,
    EOS,
    PAD,
    IMAGE,
    REF_OPEN,
    REF_CLOSE,
    DET_OPEN,
    DET_CLOSE,
    GROUNDING,
    TABLE_CELL_OPEN,
    TABLE_CELL_CLOSE,
)
