"""A small byte-level tokenizer with DeepSeek-OCR's special tokens at their real ids.

Every byte is one token (ids 3..258), so any text round-trips; BOS, EOS and pad sit at 0, 1, 2
and ``<image>``, ``<|ref|>`` ... ``</td>`` at 128815..128822 as in the released tokenizer. The
files are laid out like the released ones (tokenizer.json, tokenizer_config.json,
special_tokens_map.json). Only for tests and benchmarks on random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from worker.engine.deepseek.checkpoint import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from worker.engine.deepseek.special_tokens import BOS, EOS, PAD, REQUIRED_SPECIAL_TOKENS

FIRST_BYTE_TOKEN_ID = 3
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


def byte_token_ids() -> range:
    """The ids of the 256 byte tokens."""
    return range(FIRST_BYTE_TOKEN_ID, FIRST_BYTE_TOKEN_ID + 256)


def build_tiny_tokenizer() -> Tokenizer:
    vocab = {token.text: token.id for token in REQUIRED_SPECIAL_TOKENS}
    for offset, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet())):
        vocab[symbol] = FIRST_BYTE_TOKEN_ID + offset
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(token.text, special=True, normalized=False) for token in REQUIRED_SPECIAL_TOKENS]
    )
    return tokenizer


def write_tiny_tokenizer(directory: Path, *, model_max_length: int = 8192) -> None:
    build_tiny_tokenizer().save(str(directory / TOKENIZER_FILE))
    added_tokens = {
        str(token.id): {
            "content": token.text,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in REQUIRED_SPECIAL_TOKENS
    }
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added_tokens,
        "bos_token": BOS.text,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS.text,
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": PAD.text,
        "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": None,
        "use_default_system_prompt": False,
    }
    special_tokens_map = {"bos_token": BOS.text, "eos_token": EOS.text, "pad_token": PAD.text}
    for name, content in ((TOKENIZER_CONFIG_FILE, config), (SPECIAL_TOKENS_MAP_FILE, special_tokens_map)):
        (directory / name).write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
