"""Answers remembered per text: a third of the project's train paragraphs are exact repeats (UI strings, help
boilerplate), and cleaning and language ID depend on the text alone, so each distinct text is judged once."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MEMO_ENTRIES = 65_536  # per memo; ~a 64 MB shard's distinct paragraphs, so memory stays bounded per worker


class Memo(Generic[K, V]):
    """`compute(key)` once per distinct key; forgets everything at once when it holds `limit` entries."""

    def __init__(self, compute: Callable[[K], V], limit: int = MEMO_ENTRIES):
        self.compute, self.limit = compute, limit
        self._answers: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        answers = self._answers
        if key in answers:
            return answers[key]
        if len(answers) >= self.limit:
            answers.clear()
        value = answers[key] = self.compute(key)
        return value
