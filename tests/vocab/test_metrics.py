"""Tokenizer metrics, checked against counts done by hand on tokenizers whose output is known exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from langadapt.data.stats import text_stats
from langadapt.vocab.base import BYTE_TOKENS
from langadapt.vocab.metrics import compare_tokenizers, count_tokens, vocab_overlap


def _tiny_bpe(extra: dict[str, int], merges: list[tuple[str, str]]) -> PreTrainedTokenizerFast:
    """Whitespace-split BPE with byte fallback: bytes are ids 0-255, then `extra`."""
    vocab = {b: i for i, b in enumerate(BYTE_TOKENS)} | {t: 256 + i for t, i in extra.items()}
    model = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=True))
    model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=model)


def test_counts_match_a_hand_tokenization() -> None:
    tokenizer = _tiny_bpe({"a": 0, "b": 1, "c": 2, "ab": 3}, [("a", "b")])
    # ab -> [ab]; abc -> [ab, c]; c -> [c]; é -> [<0xC3>, <0xA9>] (byte fallback)
    counts = count_tokens(tokenizer, ["ab abc", "c é"])
    assert (counts.documents, counts.characters, counts.bytes) == (2, 9, 10)
    assert (counts.words, counts.tokens, counts.split_words, counts.unknown_tokens) == (4, 6, 2, 2)
    stats = counts.summary()
    assert stats["chars_per_token"] == round(9 / 6, 4) and stats["bytes_per_token"] == round(10 / 6, 4)
    assert stats["tokens_per_word"] == 1.5 and stats["split_word_share"] == 0.5
    assert stats["unknown_rate"] == round(2 / 6, 4)


def test_overlap_and_shared_token_share_are_exact() -> None:
    reference = _tiny_bpe({"a": 0, "b": 1, "c": 2, "ab": 3}, [("a", "b")])
    other = _tiny_bpe({"a": 0, "b": 1, "c": 2, "abc": 3, "ab": 4}, [("a", "b"), ("ab", "c")])
    assert vocab_overlap(other, reference) == {
        "shared_tokens": 260, "share_of_vocab": round(260 / 261, 4), "share_of_reference": 1.0,
    }
    result = compare_tokenizers({"ref": reference, "other": other}, {"t": ["abc abc c"]})
    assert result["reference"] == "ref"
    ref, new = result["tokenizers"]["ref"], result["tokenizers"]["other"]
    assert "shared_token_share" not in ref and "overlap" not in ref
    assert ref["tokens"] == 5 and new["tokens"] == 3  # [ab c ab c c] vs [abc abc c]
    assert new["texts"]["t"]["shared_token_share"] == round(1 / 3, 4)  # only "c" is in the reference
    assert new["vocab_size"] == 261 and new["split_word_share"] == 0.0 and ref["split_word_share"] == round(2 / 3, 4)


@pytest.mark.parametrize("fixture", ["byte_level_tokenizer", "sentencepiece_tokenizer"])
def test_tokens_per_word_agrees_with_the_data_stage_statistics(
    fixture: str, basque_dev_texts: list[str], request
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    ours = count_tokens(tokenizer, basque_dev_texts).summary()
    data = text_stats(basque_dev_texts, tokenizer)
    for key in ("documents", "characters", "words", "tokens", "tokens_per_word", "chars_per_token"):
        assert ours[key] == data[key], key


def test_byte_level_tokens_of_one_word_are_counted_once_for_that_word(byte_level_tokenizer: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    text = "🙂 kaixo"  # the emoji is 4 byte-level tokens sharing one character
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    counts = count_tokens(tokenizer, [text])
    assert counts.words == 2 and counts.tokens == len(ids)
    assert counts.split_words == 1 + (len(tokenizer(" kaixo", add_special_tokens=False)["input_ids"]) > 1)
