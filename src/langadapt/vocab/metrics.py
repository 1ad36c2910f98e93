"""Tokenizer metrics: how well a tokenizer compresses a text, and how much two vocabularies share.

Words are whitespace-separated units (the convention of fertility, tokens/word, in the tokenizer literature
and of `langadapt.data.stats`); a token belongs to the word holding its last character. Tokens are counted
without special tokens.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from langadapt.vocab.base import BYTE_TOKENS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_WORD = re.compile(r"\S+")


@dataclass
class TokenCounts:
    """Raw counts over a text; `summary()` turns them into the ratios people compare."""

    documents: int = 0
    characters: int = 0
    bytes: int = 0
    words: int = 0
    split_words: int = 0  # words covered by >= 2 tokens
    tokens: int = 0
    unknown_tokens: int = 0  # unk or <0xNN> byte-fallback tokens
    shared_tokens: int = 0  # tokens whose string is also in the reference vocabulary

    def __iadd__(self, other: TokenCounts) -> TokenCounts:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def summary(self, with_shared: bool = False) -> dict[str, Any]:
        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        stats: dict[str, Any] = {
            "documents": self.documents, "characters": self.characters, "words": self.words, "tokens": self.tokens,
            "chars_per_token": ratio(self.characters, self.tokens),
            "bytes_per_token": ratio(self.bytes, self.tokens),
            "tokens_per_word": ratio(self.tokens, self.words),
            "split_word_share": ratio(self.split_words, self.words),
            "unknown_rate": ratio(self.unknown_tokens, self.tokens),
        }
        if with_shared:
            stats["shared_token_share"] = ratio(self.shared_tokens, self.tokens)
        return stats


def _unknown_ids(tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Ids that mean "the model could not represent this": its unk token and its byte-fallback tokens."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = tokenizer.get_vocab()
    unknown = {vocab[b] for b in BYTE_TOKENS if b in vocab} if model.get("byte_fallback") else set()
    if model.get("unk_token") in vocab:  # BPE / WordPiece
        unknown.add(vocab[model["unk_token"]])
    if isinstance(model.get("unk_id"), int):  # Unigram
        unknown.add(model["unk_id"])
    return unknown


def count_tokens(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    reference: set[str] | None = None,
    batch_size: int = 256,
) -> TokenCounts:
    """Tokenize `texts` in batches with the fast backend and count characters, words, splits, unknowns."""
    backend = tokenizer.backend_tokenizer
    unknown = _unknown_ids(tokenizer)
    shared_ids = {i for t, i in tokenizer.get_vocab().items() if t in reference} if reference is not None else set()
    counts = TokenCounts()
    batch: list[str] = []

    def flush() -> None:
        for text, encoding in zip(batch, backend.encode_batch(batch, add_special_tokens=False), strict=True):
            _count_one(text, encoding.ids, encoding.offsets, unknown, shared_ids, counts)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    return counts


def _count_one(text: str, ids: list[int], offsets: list[tuple[int, int]], unknown: set[int], shared: set[int],
               counts: TokenCounts) -> None:
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = [s for s, _ in spans]
    per_word = [0] * len(spans)
    for token_id, (start, end) in zip(ids, offsets, strict=True):
        if token_id in unknown:
            counts.unknown_tokens += 1
        if token_id in shared:
            counts.shared_tokens += 1
        if end <= start:
            continue
        index = bisect_right(starts, end - 1) - 1
        if index >= 0 and end - 1 < spans[index][1]:
            per_word[index] += 1
    counts.documents += 1
    counts.characters += len(text)
    counts.bytes += len(text.encode("utf-8"))
    counts.words += len(spans)
    counts.split_words += sum(n >= 2 for n in per_word)
    counts.tokens += len(ids)


def vocab_overlap(tokenizer: PreTrainedTokenizerBase, reference: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Token strings two vocabularies share (byte-level/Metaspace surface forms, compared as they are)."""
    mine, theirs = set(tokenizer.get_vocab()), set(reference.get_vocab())
    shared = len(mine & theirs)
    return {"shared_tokens": shared, "share_of_vocab": round(shared / len(mine), 4),
            "share_of_reference": round(shared / len(theirs), 4)}


def compare_tokenizers(
    tokenizers: dict[str, PreTrainedTokenizerBase], texts: dict[str, list[str]]
) -> dict[str, Any]:
    """Stats of every tokenizer on every text (and on all texts together); the first tokenizer is the
    reference the others' vocabulary overlap is measured against.

    Returns `{"reference": NAME, "tokenizers": {NAME: {"vocab_size": .., "chars_per_token": .., ...,
    "texts": {TEXT: {...}}, "overlap": {...}}}}`.
    """
    names = list(tokenizers)
    reference_name = names[0]
    reference = tokenizers[reference_name]
    reference_vocab = set(reference.get_vocab())
    result: dict[str, Any] = {"reference": reference_name, "tokenizers": {}}
    for name, tokenizer in tokenizers.items():
        with_shared = name != reference_name
        total = TokenCounts()
        per_text = {}
        for text_name, documents in texts.items():
            counts = count_tokens(tokenizer, documents, reference=reference_vocab if with_shared else None)
            per_text[text_name] = counts.summary(with_shared)
            total += counts
        entry = {"vocab_size": len(tokenizer), **total.summary(with_shared), "texts": per_text}
        if with_shared:
            entry["overlap"] = vocab_overlap(tokenizer, reference)
        result["tokenizers"][name] = entry
    return result
