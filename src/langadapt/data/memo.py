"""Answers remembered per text: a third of the project's train paragraphs are exact repeats (UI strings, help
boilerplate), and cleaning and language ID depend on the text alone, so each distinct text is judged once."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MEMO_ENTRIES = 65_536  # per memo; ~a 64 MB shard's distinct paragraphs, so memory stays bounded per worker


class Memo(Generic[K, V]):
    """`compute(key)` once per distinct key; forgets everything at once when it holds `limit` entries.

    Batch use, where answers are computed for many keys at once: `missing(keys)`, `store` each, then read
    them back with `memo[key]`."""

    def __init__(self, compute: Callable[[K], V] | None = None, limit: int = MEMO_ENTRIES):
        self.compute, self.limit = compute, limit
        self._answers: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        assert self.compute is not None, "a batch-only memo has no compute"
        answers = self._answers
        if key in answers:
            return answers[key]
        if len(answers) >= self.limit:
            answers.clear()
        value = answers[key] = self.compute(key)
        return value

    def __getitem__(self, key: K) -> V:
        return self._answers[key]

    def missing(self, keys: Iterable[K]) -> list[K]:
        """The distinct `keys` with no answer yet, in first-seen order. When storing them would pass the
        limit, everything is forgotten first (so all of `keys` are missing)."""
        distinct = list(dict.fromkeys(keys))
        missing = [key for key in distinct if key not in self._answers]
        if len(self._answers) + len(missing) > self.limit:
            self._answers.clear()
            return distinct
        return missing

    def store(self, key: K, value: V) -> None:
        self._answers[key] = value
