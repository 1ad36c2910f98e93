"""Vocabularies built once per session from the tiny byte-level and SentencePiece-style fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from langadapt.vocab.base import BaseTokenizer
from langadapt.vocab.build import Vocabulary, build_vocabulary, save_vocabulary
from tests import tiny

FAMILIES = ("byte_level", "sentencepiece")


class Built:
    """A base, a vocabulary built from it, and the saved folder reloaded with AutoTokenizer."""

    def __init__(self, base_dir: Path, vocabulary: Vocabulary, out: Path):
        self.old: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(base_dir)
        self.base = BaseTokenizer.from_hf(self.old)
        self.vocabulary = vocabulary
        self.folder = out
        self.new: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(out)


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Callable[..., Built]:
    """`build(family, method, **kwargs)`: the vocabulary of that base on the tiny Basque corpus (cached)."""
    cache: dict[tuple, Built] = {}

    def make(family: str, method: str = "extended", vocab_size: int = 1200, **kwargs: object) -> Built:
        key = (family, method, vocab_size, tuple(sorted(kwargs.items())))
        if key not in cache:
            base_dir = request.getfixturevalue(
                "byte_level_tokenizer" if family == "byte_level" else "sentencepiece_tokenizer"
            )
            base = BaseTokenizer.from_hf(AutoTokenizer.from_pretrained(base_dir))
            vocabulary = build_vocabulary(base, iter(tiny.texts("eu")), method=method, vocab_size=vocab_size, **kwargs)
            out = tmp_path_factory.mktemp("vocab") / f"{family}-{method}"
            save_vocabulary(vocabulary, base, out)
            cache[key] = Built(base_dir, vocabulary, out)
        return cache[key]

    return make
