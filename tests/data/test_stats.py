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
