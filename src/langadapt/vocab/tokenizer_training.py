"""Train target-language tokenizers with HF `tokenizers`, following the base tokenizer's conventions.

`train_target` streams the corpus once through the Rust trainer (memory: the trainer's word counts), and can
count the same words on the side for the steps that need them (continued merges, pruning frequencies).

`continue_merges` learns new merges *on top of* the base's own segmentation of the target words, i.e. it
resumes the base's BPE training on the target corpus. No library does that; it reuses the Rust BPE trainer by
spelling every base token as one private character, so the trainer merges whole base tokens.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from langadapt.errors import LangadaptError
from langadapt.vocab.base import BaseTokenizer, BpeParts

# Base tokens are spelled as characters from here on for the continued trainer: no character of this range is
# whitespace, so the trainer's whitespace split keeps each spelled word whole (room for ~980k symbols).
_SYMBOL_OFFSET = 0x20000
_REPEAT_CHUNK = 256


@dataclass
class CorpusStats:
    documents: int = 0
    empty_documents: int = 0
    characters: int = 0


@dataclass
class TrainedTarget:
    """The target-language tokenizer's model (as tokenizer.json `model`), and what the corpus pass saw."""

    model: dict[str, Any]
    stats: CorpusStats
    words: Counter[str] = field(default_factory=Counter)  # pre-tokenized word -> count (when counted)

    @property
    def vocab_size(self) -> int:
        return len(self.model["vocab"])

    def tokens_in_rank_order(self) -> list[str]:
        vocab = self.model["vocab"]
        if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
            return [piece for piece, _ in vocab]
        return sorted(vocab, key=vocab.__getitem__)

    def merges(self) -> list[tuple[str, str]]:
        return [(a, b) for a, b in self.model.get("merges", [])]


def count_words(base: BaseTokenizer, texts: Iterable[str]) -> Counter[str]:
    """Pre-tokenized words of `texts` (the units BPE merges within) with their counts."""
    words: Counter[str] = Counter()
    for _ in _passthrough(base, texts, CorpusStats(), words):
        pass
    return words


def _passthrough(base: BaseTokenizer, texts: Iterable[str], stats: CorpusStats,
                 words: Counter[str] | None) -> Iterator[str]:
    """Yield the non-blank texts, counting documents (and words) on the way."""
    splitter = base.word_splitter()
    normalizer, pre_tokenizer = splitter.normalizer, splitter.pre_tokenizer
    for text in texts:
        stats.documents += 1
        if not text.strip():
            stats.empty_documents += 1
            continue
        stats.characters += len(text)
        if words is not None:
            normalized = normalizer.normalize_str(text) if normalizer is not None else text
            words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
        yield text


def train_target(
    base: BaseTokenizer,
    texts: Iterable[str],
    *,
    kind: Literal["bpe", "unigram"],
    vocab_size: int,
    min_frequency: int = 2,
    count: bool = False,
) -> TrainedTarget:
    """Train a `kind` tokenizer of `vocab_size` tokens on `texts`, with the base's normalizer and word split.

    Byte-level bases get the full 256-symbol byte alphabet, so every text stays representable. The base's
    added tokens are passed as the trainer's special tokens, so they are never split into merges.
    """
    from tokenizers import models, trainers

    stats = CorpusStats()
    words: Counter[str] | None = Counter() if count else None
    specials = [t["content"] for t in base.added_tokens]
    alphabet = base.alphabet() if base.family == "byte_level" else []
    tokenizer = base.word_splitter()
    if kind == "bpe":
        tokenizer.model = models.BPE()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
            initial_alphabet=alphabet, show_progress=False,
        )
    else:
        tokenizer.model = models.Unigram()
        unk = base.parts.options.get("unk_token")
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
            unk_token=unk if unk in specials else None, show_progress=False,
        )
    tokenizer.train_from_iterator(_passthrough(base, texts, stats, words), trainer)
    if stats.documents == stats.empty_documents:
        raise LangadaptError(
            f"the training corpus holds no text ({stats.documents} documents, all empty or whitespace) — "
            "check the corpus path and its text field"
        )
    model = json.loads(tokenizer.to_str())["model"]
    return TrainedTarget(model=model, stats=stats, words=words if words is not None else Counter())


def continue_merges(
    parts: BpeParts,
    words: Counter[str],
    n_tokens: int,
    *,
    min_frequency: int = 2,
    byte_level: bool = True,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Learn up to `n_tokens` new tokens by resuming BPE from the base's segmentation of `words`.

    Every word is first split by the base model exactly as the base tokenizer splits it; the most frequent
    adjacent pair is then merged, again and again. Appended after the base merges, these merges leave any
    word they do not touch tokenized as before and reach every new token from the base's own pieces, so
    neither English nor the target language loses to a segmentation the base never produces.

    Characters the base vocabulary lacks become new alphabet tokens first: for byte-level bases every byte
    symbol it lacks (else text holding that byte is silently dropped), for byte-fallback bases those seen
    `min_frequency` times (the rest keep falling back to bytes, and no merge crosses them).
    Returns (new tokens in id order, new merges in rank order).
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    segmented = [(parts.segment(word), count) for word, count in words.items()]
    if byte_level:  # the whole byte alphabet, so no text is ever dropped
        new_chars = sorted(c for c in pre_tokenizers.ByteLevel.alphabet() if c not in parts.vocab)[:n_tokens]
    else:
        unknown: Counter[str] = Counter()
        for pieces, count in segmented:
            unknown.update({piece: count for piece, known in pieces if not known})
        new_chars = [c for c, n in unknown.most_common() if n >= min_frequency][:n_tokens]
    allowed = set(new_chars)

    symbols: dict[str, str] = {}  # base token or new character -> its one-character spelling
    spelled: list[tuple[str, int]] = []
    for pieces, count in segmented:
        word = []
        for piece, known in pieces:
            if known or piece in allowed:
                word.append(symbols.setdefault(piece, chr(_SYMBOL_OFFSET + len(symbols))))
            else:
                word.append(" ")  # a byte-fallback character: a barrier no merge crosses
        spelled.append(("".join(word), count))
    n_merges = n_tokens - len(new_chars)
    if n_merges <= 0 or not symbols:
        return new_chars, []

    def repeated() -> Iterator[str]:
        for word, count in spelled:
            for start in range(0, count, _REPEAT_CHUNK):
                yield " ".join([word] * min(_REPEAT_CHUNK, count - start))

    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(vocab_size=len(symbols) + n_merges, min_frequency=min_frequency, show_progress=False)
    trainer_tokenizer.train_from_iterator(repeated(), trainer)
    spelling = {char: piece for piece, char in symbols.items()}

    def unspell(text: str) -> str:
        return "".join(spelling[char] for char in text)

    known_merges = set(parts.merges)
    new_tokens = list(new_chars)
    seen = set(parts.vocab) | allowed
    merges = []
    for left, right in json.loads(trainer_tokenizer.to_str())["model"]["merges"]:
        pair = (unspell(left), unspell(right))
        product = pair[0] + pair[1]
        if pair not in known_merges:
            merges.append(pair)
        if product not in seen:
            seen.add(product)
            new_tokens.append(product)
    return new_tokens, merges
