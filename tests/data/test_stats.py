"""Token ids and counts straight from a fast tokenizer's backend equal a plain `tokenizer(texts)` call."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from langadapt.data.stats import TextStats, token_count, token_ids


@pytest.mark.parametrize("fixture", ["byte_level_tokenizer", "sentencepiece_tokenizer"])
def test_backend_ids_and_counts_equal_a_plain_call(fixture: str, basque_dev_texts: list[str], request) -> None:
    tokenizer = AutoTokenizer.from_pretrained(request.getfixturevalue(fixture))
    texts = [*basque_dev_texts[:200], "", "🙂 kaixo\n\n  mundua"]
    expected = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokenizer.backend_tokenizer.enable_truncation(max_length=4)  # state a plain call would reset
    tokenizer.backend_tokenizer.enable_padding(length=64)
    assert token_ids(tokenizer, texts) == expected
    assert token_count(tokenizer, texts) == sum(map(len, expected))
    stats = TextStats(tokenizer)
    stats.add(texts[:100])
    stats.add(texts[100:])
    assert stats.tokens == sum(map(len, expected)) and stats.documents == len(texts)


class _NoBackend:
    """A tokenizer without a Rust backend (a slow tokenizer's interface): only the plain call."""

    def __init__(self, fast_dir: Path):
        self._fast = AutoTokenizer.from_pretrained(fast_dir)

    def __call__(self, texts: list[str], **kwargs: object) -> dict[str, list[list[int]]]:
        return {"input_ids": self._fast(texts, add_special_tokens=False)["input_ids"]}


def test_a_tokenizer_without_a_backend_is_called(byte_level_tokenizer: Path, basque_dev_texts: list[str]) -> None:
    slow = _NoBackend(byte_level_tokenizer)
    expected = slow(basque_dev_texts[:50])["input_ids"]
    assert token_ids(slow, basque_dev_texts[:50]) == expected
    assert token_count(slow, basque_dev_texts[:50]) == sum(map(len, expected))


def test_every_kth_text_is_tokenised_and_the_rest_estimated_per_character(
    byte_level_tokenizer: Path, basque_dev_texts: list[str]
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    texts = basque_dev_texts[:103]
    stats = TextStats(tokenizer, token_every=4)
    for start, end in ((0, 10), (10, 11), (11, 50), (50, 103)):  # batch edges that are not multiples of 4
        stats.add(texts[start:end])
    sample = texts[::4]
    sample_tokens = token_count(tokenizer, sample)
    characters = sum(map(len, texts))
    assert (stats.sampled_documents, stats.sampled_tokens) == (len(sample), sample_tokens)
    assert stats.tokens == round(sample_tokens * characters / sum(map(len, sample)))
    assert stats.to_dict()["tokens_estimated_from"] == len(sample) and stats.characters == characters
    exact = TextStats(tokenizer, token_every=1)
    exact.add(texts)
    assert exact.tokens == token_count(tokenizer, texts) and "tokens_estimated_from" not in exact.to_dict()


def test_counts_summed_over_shards_keep_the_estimate_and_say_so() -> None:
    summed = {"documents": 10, "characters": 500, "words": 90, "tokens": 240, "token_sample_documents": 3}
    stats = TextStats.of_counts(summed, with_tokens=True).to_dict()
    assert (stats["tokens"], stats["tokens_estimated_from"], stats["chars_per_token"]) == (240, 3, round(500 / 240, 4))
    assert "tokens_estimated_from" not in TextStats.of_counts({**summed, "token_sample_documents": 10}, True).to_dict()
    assert "tokens_estimated_from" not in TextStats.of_counts({k: v for k, v in summed.items()
                                                                if k != "token_sample_documents"}, True).to_dict()
