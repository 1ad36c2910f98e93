"""Text normalisation and per-document quality filters.

The repetition filters are Gopher's (Rae et al. 2021, Table A1) as datatrove implements them for FineWeb
(`datatrove.pipeline.filters.gopher_repetition_filter`; its functions compute the shares here): the share
of characters in duplicate lines, in the most frequent 2/3/4-gram, and in repeated 5..10-grams. One
deliberate deviation, because target-language corpora are often short paragraphs: words are whitespace
units (datatrove's class needs a spaCy tokenizer per language), and the n-gram filters only judge
documents of at least `repetition_min_words` words (a 6-word sentence always has a "top 2-gram" worth
30 % of its text).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)

from langadapt.data.config import CleanConfig
from langadapt.data.memo import Memo

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")  # whitespace other than newline, incl. tabs and NBSP
_MANY_NEWLINES = re.compile(r"\n{3,}")
# C0/C1 control characters except tab and newline, plus zero-width/format characters that break words.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff]")
_LINE_BREAKS = re.compile(r"\r\n?|\u2028|\u2029")


def normalize_whitespace(text: str) -> str:
    """Unify line breaks, drop control characters, collapse runs of spaces, keep paragraph breaks."""
    if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text  # one line, no control or format characters, and U+0020 its only space: nothing to do
    text = _CONTROL.sub("", _LINE_BREAKS.sub("\n", text))
    lines = [_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def non_letter_share(text: str, words: list[str] | None = None) -> float:
    """Share of the non-space characters that are not letters (digits, punctuation, symbols, markup).

    Counted over `words` (`text.split()`, which the filters have already made): a word of letters only is
    counted by its length, so most words need no per-character look."""
    words = text.split() if words is None else words
    visible = sum(map(len, words))
    if not visible:
        return 1.0
    letters = sum(len(word) if word.isalpha() else sum(map(str.isalpha, word)) for word in words)
    return 1.0 - letters / visible


def duplicate_line_shares(text: str) -> tuple[float, float]:
    """(share of lines that repeat an earlier line, share of characters in those lines) — Gopher."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0, 0.0
    duplicate_lines, duplicate_chars = find_duplicates(lines)
    return duplicate_lines / len(lines), duplicate_chars / max(1, len(text))


def top_ngram_share(words: list[str], n: int, text_chars: int) -> float:
    """Characters covered by the most frequent word n-gram (with its inner spaces) / characters."""
    grams = get_n_grams(words, n)
    return find_top_duplicate(grams) / max(1, text_chars) if grams else 0.0


def duplicate_ngram_share(words: list[str], n: int, text_chars: int) -> float:
    """Characters in word n-grams that repeat an earlier n-gram (non-overlapping, as Gopher) / characters."""
    return find_all_duplicate(words, n) / max(1, text_chars) if len(words) >= n else 0.0


@dataclass(frozen=True)
class Filter:
    """A named check: `rejects(text, words)` is True when the document must go."""

    name: str
    rejects: Callable[[str, list[str]], bool]


def build_filters(cfg: CleanConfig) -> list[Filter]:
    """The enabled filters, cheapest first; a document is removed by (and counted for) the first that fails."""
    filters = []
    if cfg.min_chars:
        filters.append(Filter("min_chars", lambda text, words: len(text) < cfg.min_chars))
    if cfg.min_words:
        filters.append(Filter("min_words", lambda text, words: len(words) < cfg.min_words))
    if cfg.max_non_letter_share is not None:
        limit = cfg.max_non_letter_share
        filters.append(Filter("non_letter_share", lambda text, words: non_letter_share(text, words) > limit))
    if cfg.max_duplicate_line_share is not None or cfg.max_duplicate_line_char_share is not None:
        line_limit = cfg.max_duplicate_line_share if cfg.max_duplicate_line_share is not None else 1.0
        char_limit = cfg.max_duplicate_line_char_share if cfg.max_duplicate_line_char_share is not None else 1.0

        def duplicate_lines(text: str, words: list[str]) -> bool:
            if "\n" not in text:
                return False
            lines, chars = duplicate_line_shares(text)
            return lines > line_limit or chars > char_limit

        filters.append(Filter("duplicate_lines", duplicate_lines))
    min_words = cfg.repetition_min_words
    if cfg.max_top_ngram_share:
        tops = cfg.max_top_ngram_share
        filters.append(Filter("top_ngram", lambda text, words: len(words) >= min_words and any(
            top_ngram_share(words, n, len(text)) > limit for n, limit in tops.items())))
    if cfg.max_duplicate_ngram_share:
        dups = cfg.max_duplicate_ngram_share
        filters.append(Filter("duplicate_ngrams", lambda text, words: len(words) >= min_words and any(
            duplicate_ngram_share(words, n, len(text)) > limit for n, limit in dups.items())))
    return filters


class Cleaner:
    """Normalises a document and tells which filter (if any) removes it; a repeated text is judged once."""

    def __init__(self, cfg: CleanConfig | None):
        self.cfg = cfg
        self.filters = build_filters(cfg) if cfg is not None else []
        self.normalize = Memo(self._normalize) if cfg is not None else _unchanged
        self.rejection = Memo(self._rejection)

    def _normalize(self, text: str) -> str:
        assert self.cfg is not None
        cleaned = unicodedata.normalize(self.cfg.normalize, text) if self.cfg.normalize else text
        if self.cfg.whitespace:
            cleaned = normalize_whitespace(cleaned)
        return cleaned

    def _rejection(self, text: str) -> str | None:
        """The name of the first filter that removes `text` (already normalised), else None."""
        if not text.strip():
            return "empty"
        words = text.split()
        for check in self.filters:
            if check.rejects(text, words):
                return check.name
        return None


def _unchanged(text: str) -> str:
    return text
