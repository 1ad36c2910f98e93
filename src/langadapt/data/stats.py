"""Corpus statistics: documents, characters, words, tokens, and the ratios that compare tokenizers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def text_stats(texts: Iterable[str], tokenizer: PreTrainedTokenizerBase | None = None, batch_size: int = 512) -> dict[str, Any]:
    """Counts over `texts`; with a tokenizer also tokens, tokens/word and characters/token.

    Words are whitespace-separated units, the convention of fertility (tokens/word) in the tokenizer
    literature; tokens are counted without special tokens.
    """
    documents = characters = words = tokens = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal tokens
        if tokenizer is not None and batch:
            encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
            tokens += sum(len(ids) for ids in encoded)
        batch.clear()

    for text in texts:
        documents += 1
        characters += len(text)
        words += len(text.split())
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    flush()
    stats: dict[str, Any] = {"documents": documents, "characters": characters, "words": words}
    if tokenizer is not None:
        stats["tokens"] = tokens
        stats["tokens_per_word"] = round(tokens / words, 4) if words else None
        stats["chars_per_token"] = round(characters / tokens, 4) if tokens else None
    return stats
