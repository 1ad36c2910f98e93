"""Splitting a (masked) text into the segments a backend translates, and putting the translations back.

A text is cut at every line break first: lists, headings and paragraphs keep their layout because the
translator never sees a newline. A line's indentation, list marker (`- `, `1. `, `## `) and trailing
spaces stay outside its segment. A line longer than the backend's limit is cut after sentence ends, and a
sentence longer than that at spaces. Pieces without a letter (a lone code-block tag, a number, a marker) are
not sent at all. Joining the pieces, translated or not, rebuilds the text exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from langadapt.translate.masking import TAG

_LINES = re.compile(r"(\n)")
_AFFIXES = re.compile(r"^(\s*(?:(?:[-*+•]|\d{1,3}[.)]|#{1,6}|>)\s+)?)(.*?)(\s*)$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?…;:])(\s+)")


@dataclass(frozen=True)
class Piece:
    text: str
    translate: bool  # False: kept as it is (layout, markers, tags alone, text without letters)


def split_text(text: str, max_chars: int) -> list[Piece]:
    """Pieces whose texts concatenate to `text`; the translatable ones are at most `max_chars` long."""
    pieces: list[Piece] = []
    for line in _LINES.split(text):
        if line == "\n" or not line:
            pieces.append(Piece(line, False))
            continue
        match = _AFFIXES.match(line)
        assert match is not None  # the pattern matches any line
        prefix, core, suffix = match.groups()
        pieces.append(Piece(prefix, False))
        pieces.extend(_split_core(core, max_chars))
        pieces.append(Piece(suffix, False))
    return [p for p in pieces if p.text]


def has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in TAG.sub("", text))


def _split_core(core: str, max_chars: int) -> list[Piece]:
    if not has_letters(core):
        return [Piece(core, False)]
    if len(core) <= max_chars:
        return [Piece(core, True)]
    return _pack(_SENTENCE_END.split(core), max_chars, split_long=_split_words)


def _split_words(sentence: str, max_chars: int) -> list[Piece]:
    return _pack(re.split(r"(\s+)", sentence), max_chars, split_long=_cut)


def _cut(word: str, max_chars: int) -> list[Piece]:
    return [Piece(word[at : at + max_chars], True) for at in range(0, len(word), max_chars)]


def _pack(parts: list[str], max_chars: int, split_long: Callable[[str, int], list[Piece]]) -> list[Piece]:
    """Units (even indices) joined with the gaps between them (odd indices) into chunks of at most `max_chars`;
    a gap where a chunk ends stays outside it, a unit longer than the limit is split by `split_long`."""
    pieces: list[Piece] = []
    chunk = ""
    for index in range(0, len(parts), 2):
        gap, unit = (parts[index - 1] if index else ""), parts[index]
        if chunk and len(chunk) + len(gap) + len(unit) <= max_chars:
            chunk += gap + unit
            continue
        if chunk:
            pieces.append(Piece(chunk, has_letters(chunk)))
        pieces.append(Piece(gap, False))
        chunk = unit
        if len(chunk) > max_chars:
            *whole, last = split_long(chunk, max_chars)
            pieces += whole
            chunk = last.text
    pieces.append(Piece(chunk, has_letters(chunk)))
    return [p for p in pieces if p.text]


def join_pieces(pieces: list[Piece], translations: dict[int, str]) -> str:
    """The text rebuilt from its pieces, the translated ones (by piece index) replaced."""
    return "".join(translations.get(index, piece.text) for index, piece in enumerate(pieces))
