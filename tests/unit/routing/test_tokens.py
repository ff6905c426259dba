from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from worker.engine.tokenizer_counter import TokenizerCounter
from worker.routing.tokens import (
    CalibratedRateCounter,
    CharClass,
    ScriptMix,
    TokenCounter,
    classify,
    token_counter,
)


@pytest.mark.parametrize(
    ("char", "expected"),
    [
        ("a", CharClass.LATIN),
        ("é", CharClass.LATIN),
        ("7", CharClass.DIGIT),
        (",", CharClass.PUNCT),
        ("中", CharClass.HAN),
        ("の", CharClass.KANA),
        ("カ", CharClass.KANA),
        ("한", CharClass.HANGUL),
        ("Ж", CharClass.OTHER),
        ("ب", CharClass.OTHER),
        ("\n", CharClass.NEWLINE),
        (" ", CharClass.SPACE),
    ],
)
def test_characters_fall_into_their_script_class(char: str, expected: CharClass) -> None:
    assert classify(char) is expected


def test_script_mix_counts_non_space_characters_by_script() -> None:
    mix = ScriptMix.of("Tokyo 東京 2025\nソウル 서울")

    assert mix.chars == 16
    assert mix.cjk == 7
    assert mix.latin == 9
    assert mix.counts[CharClass.NEWLINE] == 1
    assert mix.share(mix.cjk) == pytest.approx(7 / 16, abs=1e-3)


def test_calibrated_rates_price_cjk_far_above_latin_per_character() -> None:
    counter = CalibratedRateCounter()
    latin = "documents" * 20
    chinese = "文档路由模式压缩比率" * 18

    assert len(latin) == len(chinese)
    assert counter.count(chinese) > 2 * counter.count(latin)
    assert counter.count("") == 0
    assert isinstance(counter, TokenCounter)


def test_calibrated_rates_are_near_a_quarter_token_per_english_letter() -> None:
    text = "The compression ratio keeps decoding precision near ninety seven percent. " * 10

    assert 130 <= CalibratedRateCounter().count(text) <= 220


def _write_word_tokenizer(directory: Path) -> Path:
    vocab = {"[UNK]": 0, "the": 1, "page": 2, "<td>": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


def test_tokenizer_counter_loads_the_model_tokenizer_on_first_use(tmp_path: Path) -> None:
    counter = TokenizerCounter(_write_word_tokenizer(tmp_path))

    assert "_tokenizer" not in vars(counter)
    assert counter.count("the page the page") == 4
    assert "_tokenizer" in vars(counter)
    assert counter.name == "tokenizer"


def test_tokenizer_counter_treats_ocr_table_tags_as_single_tokens(tmp_path: Path) -> None:
    counter = TokenizerCounter(_write_word_tokenizer(tmp_path))

    assert counter.count("<tr><td>the</td></tr>") == 5


def test_a_model_directory_without_a_tokenizer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        TokenizerCounter(tmp_path)


def test_token_counter_picks_the_tokenizer_only_with_a_model_directory(tmp_path: Path) -> None:
    assert token_counter(None).name == "rates"
    assert token_counter(_write_word_tokenizer(tmp_path)).name == "tokenizer"
