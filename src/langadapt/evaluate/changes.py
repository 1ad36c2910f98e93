"""Every evaluated model's figures with their 95 % intervals, the change against the reference model (the
original) and the change each stage made to the model before it.

A change has a paired interval where both models carry per-item data for the figure (`intervals.py`); it is
a regression when that interval lies entirely on the worse side of zero (and rests on at least `MIN_ITEMS`
items). Figures without per-item data
(tokens/word, words/s, ROUGE, a plug-in's numbers) get their value and change, and no verdict.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from langadapt.evaluate.intervals import MIN_ITEMS, ItemScores, interval, paired_change, verdict

Headlines = dict[str, dict[str, float]]  # model label -> figure label -> value
Items = dict[str, dict[str, ItemScores]]  # model label -> figure label -> its per-item data


def _round(value: float) -> float:
    return round(value, 6)


def change(before: float, after: float, before_items: ItemScores | None,
           after_items: ItemScores | None) -> dict[str, Any]:
    """after − before, with its paired interval when both have per-item data on the same items, and a verdict
    when they are at least `MIN_ITEMS`."""
    out: dict[str, Any] = {"delta": _round(after - before)}
    if before_items is not None and after_items is not None:
        ci = paired_change(before_items, after_items)
        if ci is not None:
            out.update(delta_low=_round(ci[0]), delta_high=_round(ci[1]))
            if before_items.n >= MIN_ITEMS:
                out["verdict"] = verdict(ci, before_items.lower_is_better)
    return out


def figure_table(headlines: Headlines, items: Items, reference: str) -> dict[str, dict[str, dict[str, Any]]]:
    """model → figure → {value, low, high, n, lower_is_better, delta, delta_low, delta_high, verdict}."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for label, headline in headlines.items():
        rows = table[label] = {}
        for metric, value in headline.items():
            entry: dict[str, Any] = {"value": value}
            scores = items.get(label, {}).get(metric)
            ci = interval(scores) if scores is not None else None
            if scores is not None and ci is not None:
                entry.update(low=_round(ci[0]), high=_round(ci[1]), n=scores.n, lower_is_better=scores.lower_is_better)
            base = headlines.get(reference, {}).get(metric)
            if label != reference and _is_number(value) and _is_number(base):
                entry.update(change(base, value, items.get(reference, {}).get(metric), scores))
            rows[metric] = entry
    return table


def regressions(table: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The changes against the reference whose whole interval is on the worse side, in table order."""
    return [{"model": label, "metric": metric, **{k: entry[k] for k in ("value", "delta", "delta_low", "delta_high")}}
            for label, rows in table.items() for metric, entry in rows.items() if entry.get("verdict") == "worse"]


def stage_changes(chain: list[str], headlines: Headlines, items: Items) -> list[dict[str, Any]]:
    """For consecutive models of `chain` (pipeline order), the change the later one made to each figure."""
    steps = []
    for before, after in pairwise(chain):
        changes = {}
        for metric, value in headlines[after].items():
            base = headlines[before].get(metric)
            if _is_number(value) and _is_number(base):
                changes[metric] = change(base, value, items.get(before, {}).get(metric),
                                         items.get(after, {}).get(metric))
        steps.append({"stage": after, "from": before, "changes": changes})
    return steps


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
