"""The interval math: bootstrap of a ratio over documents, Wilson for rates, paired changes, verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from langadapt.evaluate.changes import figure_table, regressions, stage_changes
from langadapt.evaluate.intervals import ItemScores, interval, paired_change, verdict, wilson

Z = 1.959963984540054  # the 97.5 % normal quantile


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return centre - half, centre + half


def test_wilson_matches_the_formula_and_published_values() -> None:
    for k, n in ((0, 4), (1, 4), (5, 10), (81, 263), (20, 20)):
        assert wilson(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=5e-5)  # Newcombe (1998), example (a)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=5e-5)
    assert interval(ItemScores.successes([True, False, False, False])) == wilson(1, 4)


def test_bootstrap_of_a_constant_ratio_is_a_point() -> None:
    chars = [10, 250, 37, 1200, 3]
    scores = ItemScores.ratio([2.5 * c for c in chars], chars, scale=1 / math.log(2))
    low, high = interval(scores)
    assert low == pytest.approx(2.5 / math.log(2), abs=1e-12) and high == pytest.approx(low, abs=1e-12)
    assert scores.estimate == pytest.approx(low, abs=1e-12)


def test_bootstrap_of_two_documents_spans_their_two_ratios() -> None:
    # Resampling two documents gives {doc 1 twice, one of each, doc 2 twice} with probabilities 1/4, 1/2, 1/4:
    # both extremes carry far more than 2.5 % of the mass, so the 95 % interval is exactly [r1, r2].
    low, high = interval(ItemScores.ratio([3.0, 40.0], [10, 20], lower_is_better=True))
    assert (low, high) == pytest.approx((0.3, 2.0), abs=1e-12)
    assert interval(ItemScores.ratio([3.0], [10])) == (0.3, 0.3)  # one document: nothing to resample
    assert interval(ItemScores.ratio([], [])) is None


def test_paired_change_of_rates_by_hand() -> None:
    # Differences [0, 0, 1, 1]: a mean of 4 resampled differences is 0 (or 1) with probability 1/16 > 2.5 %.
    before, after = ItemScores.successes([1, 1, 0, 0]), ItemScores.successes([1, 1, 1, 1])
    assert paired_change(before, after) == pytest.approx((0.0, 1.0), abs=1e-12)
    assert verdict((0.0, 1.0), lower_is_better=False) == "same"
    assert paired_change(before, before) == (0.0, 0.0)


def test_a_change_on_every_document_is_a_point_and_a_regression() -> None:
    chars = [12, 40, 7]
    before = ItemScores.ratio([1.0 * c for c in chars], chars)
    after = ItemScores.ratio([1.25 * c for c in chars], chars)
    change = paired_change(before, after)
    assert change == pytest.approx((0.25, 0.25), abs=1e-12)
    assert verdict(change, lower_is_better=True) == "worse"
    assert verdict(change, lower_is_better=False) == "better"
    assert verdict((-0.3, -0.1), lower_is_better=True) == "better"
    assert paired_change(before, ItemScores.ratio([1.0, 2.0, 3.0], [12, 40, 8])) is None  # other documents


def test_paired_interval_is_narrower_than_the_unpaired_one_on_correlated_data() -> None:
    rng = np.random.default_rng(3)
    chars = rng.integers(50, 500, size=60)
    difficulty = rng.uniform(0.5, 4.0, size=60)  # documents differ a lot; both models find the same ones hard
    before = ItemScores.ratio(difficulty * chars, chars)
    after = ItemScores.ratio((difficulty + 0.05 + rng.normal(0, 0.02, 60)) * chars, chars)
    paired = paired_change(before, after)
    (low_a, high_a), (low_b, high_b) = interval(before), interval(after)
    unpaired_width = (high_b - low_a) - (low_b - high_a)  # the change's range from the two separate intervals
    assert paired[0] > 0 and paired[1] - paired[0] < 0.1 * unpaired_width


def test_rates_need_zero_one_values_and_ratios_one_denominator_each() -> None:
    with pytest.raises(ValueError, match="0/1"):
        ItemScores.successes([0.5])
    with pytest.raises(ValueError, match="one denominator"):
        ItemScores.ratio([1.0, 2.0], [1])


def test_figure_table_gives_intervals_and_flags_regressions_from_ten_items_up() -> None:
    # bits/char with scale 1: base 60/30 = 2.0; cpt adds 2, 4, 6 nats to the three 10-character documents.
    chars = [10, 10, 10]
    base = ItemScores.ratio([10, 20, 30], chars)
    cpt = ItemScores.ratio([12, 24, 36], chars)
    headlines = {
        "base": {"d bpc": 2.0, "tok/word": 3.0, "e bpc": 1.0},
        "cpt": {"d bpc": 2.4, "tok/word": 2.0, "e bpc": 1.5},
        "sft": {"d bpc": 2.4, "tok/word": 2.0, "e bpc": 1.5},
    }
    ten = [10] * 10
    items = {"base": {"d bpc": base, "e bpc": ItemScores.ratio(ten, ten)},
             "cpt": {"d bpc": cpt, "e bpc": ItemScores.ratio([15] * 10, ten)},
             "sft": {"d bpc": cpt, "e bpc": ItemScores.ratio([15] * 10, ten)}}
    table = figure_table(headlines, items, "base")
    assert table["base"]["d bpc"] == {"value": 2.0, "low": 1.0, "high": 3.0, "n": 3, "lower_is_better": True}
    # A resample of all-first (or all-last) documents has probability 1/27 > 2.5 %: the change spans 0.2..0.6,
    # but three documents are too few for a verdict.
    assert table["cpt"]["d bpc"] == {"value": 2.4, "low": 1.2, "high": 3.6, "n": 3, "lower_is_better": True,
                                     "delta": 0.4, "delta_low": 0.2, "delta_high": 0.6}
    assert table["cpt"]["e bpc"] == {"value": 1.5, "low": 1.5, "high": 1.5, "n": 10, "lower_is_better": True,
                                     "delta": 0.5, "delta_low": 0.5, "delta_high": 0.5, "verdict": "worse"}
    assert table["cpt"]["tok/word"] == {"value": 2.0, "delta": -1.0}  # no per-item data: no interval, no verdict
    assert regressions(table) == [
        {"model": "cpt", "metric": "e bpc", "value": 1.5, "delta": 0.5, "delta_low": 0.5, "delta_high": 0.5},
        {"model": "sft", "metric": "e bpc", "value": 1.5, "delta": 0.5, "delta_low": 0.5, "delta_high": 0.5}]
    steps = stage_changes(["base", "cpt", "sft"], headlines, items)
    assert [(s["stage"], s["from"]) for s in steps] == [("cpt", "base"), ("sft", "cpt")]
    assert steps[0]["changes"]["e bpc"]["verdict"] == "worse"
    assert steps[1]["changes"]["e bpc"] == {"delta": 0.0, "delta_low": 0.0, "delta_high": 0.0, "verdict": "same"}
