"""Hand-made extended tokenizers and token maps for the embedding/LEP tests.

The vocabulary stage builds the real Extended tokenizers; these tests need exact control over which
tokens are new and what they decompose into, so they append whole words to a copy of a tiny tokenizer
(`tokenizers` added tokens) and write the `TokenMap` by hand.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

from langadapt.vocab.token_map import TokenMap, vocab_hash


def surface(tokenizer, word: str) -> str:
    """The word as the old tokenizer's model sees it: byte-level symbols, or Metaspace '▁' for spaces."""
    spec = tokenizer.backend_tokenizer.to_str()
    if '"ByteLevel"' in spec:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word)[0][0]
    return word.replace(" ", "▁")


def decompose(tokenizer, word: str) -> list[int]:
    """Old-tokenizer ids of a word, from the tokenizer's own model (no normaliser, no dummy prefix)."""
    return [token.id for token in tokenizer.backend_tokenizer.model.tokenize(surface(tokenizer, word))]


def extend_with_words(
    tokenizer_dir: Path, words: list[str], out: Path, decompositions: dict[str, list[int]] | None = None
) -> tuple[Path, TokenMap]:
    """Append `words` as new tokens; their decompositions default to `decompose`. Writes token_map.json."""
    old = AutoTokenizer.from_pretrained(tokenizer_dir)
    new = AutoTokenizer.from_pretrained(tokenizer_dir)
    added = new.add_tokens(words)
    assert added == len(words), "every word must be new to the tokenizer"
    new.save_pretrained(out)
    n = len(old)
    decompositions = decompositions or {}
    token_map = TokenMap(
        method="extended",
        base_vocab_size=n,
        base_vocab_hash=vocab_hash(old),
        old_ids=[*range(n), *[-1] * len(words)],
        decompositions={n + i: decompositions.get(w, decompose(old, w)) for i, w in enumerate(words)},
    )
    token_map.save(out)
    return Path(out), token_map
