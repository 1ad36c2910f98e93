"""token_map.json round-trips and refuses maps built from another base vocabulary."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from langadapt.errors import LangadaptError
from langadapt.vocab.token_map import TokenMap, vocab_hash


def test_round_trip_and_queries(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    old = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    n = len(old)
    token_map = TokenMap("extended", n, vocab_hash(old), [*range(n), -1, -1], {n: [5, 6], n + 1: [7]})
    token_map.save(tmp_path)
    loaded = TokenMap.load(tmp_path)
    assert loaded == token_map
    assert loaded.vocab_size == n + 2 and loaded.new_ids() == [n, n + 1]
    assert loaded.kept_ids()[:2] == [(0, 0), (1, 1)]
    loaded.check_base(old)


def test_mismatched_base_and_broken_maps_are_refused(
    tmp_path: Path, byte_level_tokenizer: Path, sentencepiece_tokenizer: Path
) -> None:
    old = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    other = AutoTokenizer.from_pretrained(sentencepiece_tokenizer)
    token_map = TokenMap("extended", len(old), vocab_hash(old), [0, 1, -1], {2: [1]})
    with pytest.raises(LangadaptError, match="different base vocabulary"):
        token_map.check_base(other)
    with pytest.raises(LangadaptError, match="has no decomposition"):
        TokenMap("extended", 3, "h", [0, -1], {}).check()
    with pytest.raises(LangadaptError, match=r"has no token_map\.json"):
        TokenMap.load(tmp_path)
