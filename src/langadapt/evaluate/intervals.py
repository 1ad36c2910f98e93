"""95 % intervals for the eval figures, and paired ones for the change between two models.

- bits/char is a ratio estimator, Σ NLL / Σ characters over documents: its interval is a percentile
  bootstrap over documents (2,000 resamples, fixed seed) of that ratio, not of a mean of per-document ratios;
- a rate (accuracy, target-language answers, DaruCopy `lcs`) gets Wilson's score interval;
- a mean of per-item scores (DaruCopy `len`) gets the percentile bootstrap of the mean;
- the change between two models scored on the same items is a *paired* bootstrap: both models' statistic
  on the same resampled items, so what is hard for both cancels and the interval is as narrow as the data
  allows. A change is a regression when its whole interval lies on the worse side of zero.

A verdict needs at least `MIN_ITEMS` items: on a handful the percentile bootstrap is far too narrow (three
items that all got worse give an interval that excludes zero, while an exact sign test cannot reject
"no change" with fewer than six). Below that the interval is still reported, without a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
MIN_ITEMS = 10  # items (documents, questions, prompts) a change needs before it is called better or worse

Interval = tuple[float, float]
Verdict = Literal["worse", "better", "same"]


@dataclass(frozen=True)
class ItemScores:
    """The per-item data behind one figure: the figure is `scale · Σ values / Σ weights` (a ratio) or the
    mean of `values` (no weights); `rate` marks 0/1 values (Wilson)."""

    values: tuple[float, ...]
    weights: tuple[float, ...] | None = None
    scale: float = 1.0
    rate: bool = False
    lower_is_better: bool = False

    @classmethod
    def ratio(cls, numerators: Sequence[float], denominators: Sequence[float], *, scale: float = 1.0,
              lower_is_better: bool = True) -> ItemScores:
        if len(numerators) != len(denominators):
            raise ValueError("a ratio needs one denominator per numerator")
        return cls(tuple(map(float, numerators)), tuple(map(float, denominators)), scale,
                   lower_is_better=lower_is_better)

    @classmethod
    def mean(cls, values: Sequence[float], *, lower_is_better: bool = False) -> ItemScores:
        return cls(tuple(map(float, values)), lower_is_better=lower_is_better)

    @classmethod
    def successes(cls, flags: Sequence[bool | float]) -> ItemScores:
        values = tuple(float(flag) for flag in flags)
        if any(v not in (0.0, 1.0) for v in values):
            raise ValueError("a rate needs 0/1 values")
        return cls(values, rate=True)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def estimate(self) -> float:
        if self.weights is not None:
            return self.scale * sum(self.values) / sum(self.weights)
        return self.scale * sum(self.values) / self.n

    def pairs_with(self, other: ItemScores) -> bool:
        """Whether both were measured on the same items (same count, same denominators, same kind)."""
        return (self.n == other.n and self.weights == other.weights and self.scale == other.scale
                and self.lower_is_better == other.lower_is_better)


def wilson(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson's score interval of a binomial proportion (scipy's, without continuity correction)."""
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap(samples: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray], *, level: float = LEVEL,
              resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """Percentile bootstrap of `statistic(*samples, axis=-1)`, resampling the items of all samples together."""
    from scipy.stats import bootstrap as scipy_bootstrap

    n = len(samples[0])
    if n < 2:  # one item: nothing to resample
        value = float(statistic(*samples, axis=-1))
        return value, value
    result = scipy_bootstrap(samples, statistic, paired=True, vectorized=True, n_resamples=resamples,
                             confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
                             batch=max(1, min(resamples, 2**22 // n)))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def interval(scores: ItemScores) -> Interval | None:
    """The 95 % interval of one figure; None without items."""
    if scores.n == 0:
        return None
    if scores.rate:
        return wilson(round(sum(scores.values)), scores.n)
    values = np.asarray(scores.values)
    if scores.weights is None:
        return bootstrap((values,), lambda v, axis: scores.scale * v.mean(axis))
    weights = np.asarray(scores.weights)
    return bootstrap((values, weights), lambda v, w, axis: scores.scale * v.sum(axis) / w.sum(axis))


def paired_change(before: ItemScores, after: ItemScores) -> Interval | None:
    """The 95 % paired-bootstrap interval of `after.estimate − before.estimate`; None when the two were not
    measured on the same items."""
    if before.n == 0 or not before.pairs_with(after):
        return None
    a, b = np.asarray(before.values), np.asarray(after.values)
    if before.weights is None:
        return bootstrap((b - a,), lambda d, axis: before.scale * d.mean(axis))
    weights = np.asarray(before.weights)
    return bootstrap((a, b, weights), lambda x, y, w, axis: before.scale * (y.sum(axis) - x.sum(axis)) / w.sum(axis))


def verdict(change: Interval, lower_is_better: bool) -> Verdict:
    """'worse' / 'better' when the whole interval of a change lies on one side of zero, else 'same'."""
    low, high = change
    if low > 0 or high < 0:
        return "worse" if (low > 0) == lower_is_better else "better"
    return "same"
