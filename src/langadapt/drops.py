"""Why items were removed: one counter every filter in langadapt reports through (rows, answers, pairs).

The counts go into manifests as a plain mapping and are announced once per reason, so a filter that removes
most of its input is seen, not only recorded.
"""

from __future__ import annotations

import logging
from collections import Counter


class Drops(Counter[str]):
    """reason -> how many items it removed."""

    def drop(self, reason: str, count: int = 1) -> None:
        self[reason] += count

    @property
    def total(self) -> int:
        return sum(self.values())

    def warn(self, log: logging.Logger, of: int, what: str) -> None:
        """One warning per reason: 'dropped 3 of 40 instruction rows: empty answer'."""
        for reason, count in sorted(self.items()):
            if count:
                log.warning("dropped %d of %d %s: %s", count, of, what, reason.replace("_", " "))

    def to_dict(self) -> dict[str, int]:
        return {reason: count for reason, count in sorted(self.items()) if count}
