"""The report's plots, drawn with matplotlib and inlined as SVG so the page stays one self-contained file."""

from __future__ import annotations

import io
import math
from typing import Any


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return '<figure class="plot">' + text[text.index("<svg"):] + "</figure>"


def _figure(width: float = 7.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def lines_svg(curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str:
    fig, ax = _figure()
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _svg(fig)


def bar_svg(values: dict[str, float], ylabel: str, reference: float | None = None) -> str:
    fig, ax = _figure(width=max(4.0, 1.2 * len(values) + 2))
    ax.bar(list(values), list(values.values()), color="#4c72b0")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def grouped_bar_svg(series: dict[str, dict[str, float]], ylabel: str,
                    intervals: dict[str, dict[str, tuple[float, float]]] | None = None) -> str:
    """One group of bars per key of `series` (e.g. an eval source), one bar per model, with 95 % whiskers
    where `intervals[group][model]` is known."""
    models = list(dict.fromkeys(model for values in series.values() for model in values))
    groups = list(series)
    fig, ax = _figure(width=max(5.0, 0.5 * len(models) * len(groups) + 2))
    width = 0.8 / max(1, len(models))
    for index, model in enumerate(models):
        xs = [g + index * width for g in range(len(groups))]
        heights = [series[group].get(model, math.nan) for group in groups]
        errors = [[], []]
        for group, height in zip(groups, heights, strict=True):
            low, high = (intervals or {}).get(group, {}).get(model, (height, height))
            errors[0].append(max(0.0, height - low) if math.isfinite(height) else 0.0)
            errors[1].append(max(0.0, high - height) if math.isfinite(height) else 0.0)
        ax.bar(xs, heights, width=width, label=model, yerr=errors, capsize=2, error_kw={"linewidth": 0.8})
    ax.set_xticks([g + width * (len(models) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never on them
    return _svg(fig)
