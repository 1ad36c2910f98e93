"""Corpus statistics: documents, characters, words, tokens, and the ratios that compare tokenizers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """What `tokenizer(texts, add_special_tokens=False)` gives; a fast tokenizer's Rust backend directly
    (without truncation or padding, as that call sets them) when it has one — twice as fast."""
    backend = _backend(tokenizer)
    if backend is None:
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]


def token_count(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> int:
    """How many tokens `token_ids` gives, without making Python lists of the ids (the data stage's counts:
    ~2× faster than `tokenizer(texts)` on SmolLM2's tokenizer)."""
    backend = _backend(tokenizer)
    if backend is None:
        return sum(map(len, token_ids(tokenizer, texts)))
    return sum(map(len, backend.encode_batch_fast(texts, add_special_tokens=False)))


def _backend(tokenizer: PreTrainedTokenizerBase) -> Tokenizer | None:
    """A fast tokenizer's Rust tokenizer, set to neither truncate nor pad (what a plain call sets)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    return backend


class TextStats:
    """Running counts over batches of texts; with a tokenizer also tokens (without special tokens).

    Words are whitespace-separated units, the convention of fertility (tokens/word) in the tokenizer
    literature. With `token_every` = k > 1 only every k-th text (by position over all batches) is
    tokenised, and `tokens` is the sample's tokens per character times all characters.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None, token_every: int = 1):
        self.tokenizer, self.token_every = tokenizer, token_every
        self.with_tokens = tokenizer is not None
        self.documents = self.characters = self.words = 0
        self.sampled_documents = self.sampled_characters = self.sampled_tokens = 0
        self._summed_tokens: int | None = None  # set by `of_counts`: shards' counts or estimates, added up

    def add(self, texts: list[str]) -> None:
        first = -self.documents % self.token_every  # the batch's first text whose position is a multiple of k
        self.documents += len(texts)
        self.characters += sum(len(t) for t in texts)
        self.words += sum(len(t.split()) for t in texts)
        sample = texts[first :: self.token_every]
        if self.tokenizer is not None and sample:
            self.sampled_documents += len(sample)
            self.sampled_characters += sum(len(t) for t in sample)
            self.sampled_tokens += token_count(self.tokenizer, sample)

    @property
    def tokens(self) -> int:
        """Counted when every text was tokenised, else the sample's tokens per character × all characters."""
        if self._summed_tokens is not None:
            return self._summed_tokens
        if self.sampled_documents == self.documents or not self.sampled_characters:
            return self.sampled_tokens
        return round(self.sampled_tokens * self.characters / self.sampled_characters)

    @classmethod
    def of_counts(cls, counts: dict[str, int], with_tokens: bool) -> TextStats:
        """The statistics whose counts are `counts` (e.g. summed over shards; `tokens` then is the sum of
        the shards' counts or estimates, `token_sample_documents` how many documents were tokenised)."""
        stats = cls()
        stats.documents, stats.characters, stats.words, stats._summed_tokens = (
            int(counts.get(k, 0)) for k in ("documents", "characters", "words", "tokens"))
        stats.sampled_documents = int(counts.get("token_sample_documents", stats.documents))
        stats.with_tokens = with_tokens
        return stats

    def to_dict(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"documents": self.documents, "characters": self.characters, "words": self.words}
        if self.with_tokens:
            tokens = self.tokens
            stats["tokens"] = tokens
            stats["tokens_per_word"] = round(tokens / self.words, 4) if self.words else None
            stats["chars_per_token"] = round(self.characters / tokens, 4) if tokens else None
            if self.sampled_documents < self.documents:
                stats["tokens_estimated_from"] = self.sampled_documents  # documents tokenised; the rest estimated
        return stats


def batches(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of `size` items (the last one shorter) from any iterable, read lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def text_stats(
    texts: Iterable[str], tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = 512
) -> dict[str, Any]:
    """`TextStats` over an iterable of texts, read in batches."""
    stats = TextStats(tokenizer)
    for batch in batches(texts, batch_size):
        stats.add(batch)
    return stats.to_dict()
