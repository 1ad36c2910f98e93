"""Token-exact mixing: which document pieces go into training, so each source gets its share of *tokens*.

Peers weight sources by examples (LLaMA-Factory's `interleave_probs`) or not at all, so an 80:20 request
lands wherever the mean document lengths put it. Here a share is a share of training tokens: with
`T` tokens in all, source `s` contributes exactly `round(share_s * T)` tokens (apportioned so they sum to
`T`). A source short of its target is repeated — whole passes, each in a fresh random order, then part of
one more pass — and a source with more than its target is sampled without replacement; the last document
taken is cut so the count is exact. Its tokens count EOS/BOS, i.e. everything the model is trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from langadapt.errors import LangadaptError


@dataclass
class Pieces:
    """Parallel arrays: piece i is tokens [start, start + length) of document `doc` of source `source`."""

    source: np.ndarray  # int16
    doc: np.ndarray  # int64
    start: np.ndarray  # int64
    length: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.length)

    def take(self, index: np.ndarray | slice) -> Pieces:
        return Pieces(self.source[index], self.doc[index], self.start[index], self.length[index])

    @staticmethod
    def concat(parts: list[Pieces]) -> Pieces:
        return Pieces(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("source", "doc", "start", "length")))


@dataclass
class MixPlan:
    names: list[str]  # source id i in `pieces.source` is names[i]
    requested: dict[str, float]
    available: dict[str, int]
    targets: dict[str, int]
    pieces: Pieces  # in training order

    @property
    def repeats(self) -> dict[str, float]:
        """How many times each source is used: 2.5 = every token twice and half of them a third time."""
        return {n: round(self.targets[n] / self.available[n], 4) if self.available[n] else 0.0 for n in self.names}

    @property
    def total(self) -> int:
        return sum(self.targets.values())


def token_targets(
    available: dict[str, int],
    shares: dict[str, float] | None,
    *,
    total_tokens: int | None,
    multiple: int = 1,
    max_repeats: float = math.inf,
) -> tuple[dict[str, float], dict[str, int]]:
    """(requested shares, tokens per source). `shares=None` uses every source once, in proportion.

    Without `total_tokens` the total is the largest one that needs no repeats (the scarcest source, relative
    to its share, is used exactly once). The total is rounded down to a multiple of `multiple` (the context
    length, so concatenated blocks need no padding).
    """
    if shares is None:
        grand = sum(available.values())
        shares = {n: tokens / grand for n, tokens in available.items()}
    for name, share in shares.items():
        if share > 0 and available.get(name, 0) == 0:
            raise LangadaptError(f"pack: source '{name}' has no tokens but pack.mix gives it {share:g}")
    if total_tokens is None:
        total = min(available[n] / share for n, share in shares.items() if share > 0)
        total = math.floor(total + 1e-9)
    else:
        total = total_tokens
    total -= total % multiple
    if total <= 0:
        raise LangadaptError(
            f"pack: {total_tokens or 'the corpus'} tokens do not fill one block of {multiple} — lower "
            "pack.context_length or raise pack.total_tokens"
        )
    targets = _apportion(shares, total)
    for name, tokens in targets.items():
        repeats = tokens / available[name] if tokens else 0.0
        if repeats > max_repeats + 1e-9:
            raise LangadaptError(
                f"pack: source '{name}' has {available[name]:,} tokens but the mix asks for {tokens:,} "
                f"({shares[name]:g} of {total:,}), i.e. {repeats:.2f} repeats, above pack.max_repeats="
                f"{max_repeats:g} — lower pack.total_tokens or its share, add data, or raise pack.max_repeats"
            )
    return dict(shares), targets


def _apportion(shares: dict[str, float], total: int) -> dict[str, int]:
    """Integer token counts proportional to `shares` that sum to `total` (largest remainder)."""
    exact = {n: share * total for n, share in shares.items()}
    counts = {n: math.floor(v) for n, v in exact.items()}
    short = total - sum(counts.values())
    for name in sorted(exact, key=lambda n: (counts[n] - exact[n], n))[:short]:
        counts[name] += 1
    return counts


def select_documents(lengths: np.ndarray, target: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(document indices, tokens taken from each) summing to exactly `target` tokens.

    Whole shuffled passes while the target exceeds the source, then a shuffled prefix of one more pass;
    the last document of that prefix is cut to fit.
    """
    total = int(lengths.sum())
    passes, remainder = divmod(target, total)
    docs = [rng.permutation(len(lengths)) for _ in range(passes)]
    if remainder:
        order = rng.permutation(len(lengths))
        cumulative = np.cumsum(lengths[order])
        last = int(np.searchsorted(cumulative, remainder, side="left"))  # the document that crosses the target
        docs.append(order[: last + 1])
    chosen = np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)
    taken = lengths[chosen].copy()
    if remainder:
        before = int(cumulative[last - 1]) if last else 0
        taken[-1] = remainder - before
    return chosen.astype(np.int64), taken.astype(np.int64)


def plan_mixture(
    lengths: dict[str, np.ndarray],
    shares: dict[str, float] | None,
    *,
    total_tokens: int | None,
    multiple: int,
    max_repeats: float,
    seed: int,
) -> MixPlan:
    """Choose every source's pieces and interleave them in one seeded random order."""
    names = list(lengths)
    available = {n: int(lengths[n].sum()) for n in names}
    requested, targets = token_targets(
        available, shares, total_tokens=total_tokens, multiple=multiple, max_repeats=max_repeats
    )
    rng = np.random.default_rng(seed)
    parts = []
    for index, name in enumerate(names):
        if targets[name] == 0:
            continue
        docs, taken = select_documents(lengths[name], targets[name], rng)
        parts.append(Pieces(np.full(len(docs), index, dtype=np.int16), docs, np.zeros(len(docs), np.int64), taken))
    pieces = Pieces.concat(parts)
    pieces = pieces.take(rng.permutation(len(pieces)))
    return MixPlan(names=names, requested=requested, available=available, targets=targets, pieces=pieces)
