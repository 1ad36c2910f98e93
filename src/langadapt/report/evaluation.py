"""The report's evaluation sections, from the eval stage's manifest (`evaluate/stages.py` writes it):

- evaluation: every figure (every eval source, not the first per language) × model, with its 95 % interval,
  its change against the reference model and the paired interval of that change; regressions in red;
- what each stage bought: for consecutive models in pipeline order, the change each stage made to each figure;
- sample generations: the original's and the final model's outputs on the same prompts, side by side.
"""

from __future__ import annotations

from typing import Any

from langadapt.evaluate.intervals import MIN_ITEMS
from langadapt.report.markup import columns_of, escape, fmt, is_number, section, signed, span, table
from langadapt.report.plots import grouped_bar_svg

VERDICT_TEXT = {"worse": "REGRESSION", "better": "better", "same": "no clear change"}


def evaluation_section(eval_metrics: dict[str, Any]) -> str:
    models: dict[str, dict[str, float]] = eval_metrics.get("models", {})
    if not models:
        return ""
    labels = list(models)
    reference = eval_metrics.get("reference") or labels[0]
    figures = eval_metrics.get("figures", {})
    sources = eval_metrics.get("sources", {})
    rows, classes = [], []
    for metric in columns_of(models.values()):
        present = [label for label in labels if metric in models[label]]
        for k, label in enumerate(present):
            entry = figures.get(label, {}).get(metric) or _plain_entry(models, reference, label, metric)
            head = f'<td rowspan="{len(present)}">{_figure_name(metric, sources, entry)}</td>' if k == 0 else None
            verdict = "reference" if label == reference else VERDICT_TEXT.get(entry.get("verdict"), "")
            if not verdict and "delta_low" in entry:
                verdict = f"too few items (< {MIN_ITEMS}) to tell"
            cells = [escape(label), escape(fmt(entry.get("value"))), span(entry.get("low"), entry.get("high")),
                     signed(entry.get("delta")) if label != reference else "",
                     span(entry.get("delta_low"), entry.get("delta_high"), sign=True), escape(verdict)]
            rows.append((head, cells))
            classes.append(_css(entry.get("verdict")))
    note = (f"<p>Changes (Δ) are against <b>{escape(reference)}</b>, with the 95 % interval of the change from a "
            "<i>paired</i> bootstrap over the same documents/items; a change is a REGRESSION (red) when that whole "
            f"interval lies on the worse side (judged from {MIN_ITEMS} items up). Intervals of a figure: bits/char — "
            "bootstrap over documents (2,000 resamples) of Σ NLL / Σ characters; rates — Wilson; mean scores — "
            "bootstrap of the mean. Compare models with different tokenizers by bits/char, never by token "
            "perplexity.</p>")
    header = ["figure", "model", "value", "95 % interval", f"Δ vs {reference}", "95 % interval of Δ", "verdict"]
    return section("Evaluation", note + _rowspan_table(header, rows, classes) + _bpc_plot(models, figures))


def stage_changes_section(eval_metrics: dict[str, Any]) -> str:
    steps = eval_metrics.get("steps") or []
    if not steps:
        return ""
    rows = []
    for metric in columns_of(step["changes"] for step in steps):
        cells = [escape(metric)]
        for step in steps:
            change = step["changes"].get(metric)
            if change is None:
                cells.append("—")
                continue
            css = _css(change.get("verdict"))
            value = (
                f'<span class="{css}">{escape(signed(change["delta"]))}</span>'
                if css
                else escape(signed(change["delta"]))
            )
            interval = span(change.get("delta_low"), change.get("delta_high"), sign=True)
            cells.append(f"{value}<br><small>{interval}</small>" if interval else value)
        rows.append(cells)
    header = ["figure", *(f"{step['stage']} (vs {step['from']})" for step in steps)]
    note = ("<p>The change each stage's model made to each figure, against the model before it in the pipeline, "
            "with the paired 95 % interval; red: worse beyond the interval, green: better beyond it.</p>")
    return section("What each stage bought", note + table(header, rows, raw=True))


def samples_section(eval_metrics: dict[str, Any]) -> str:
    samples = eval_metrics.get("samples") or {}
    parts = []
    for name, task in samples.items():
        original, final = task["original"], task["final"]
        rows = [[f'<div class="gen">{escape(item["prompt"])}</div>',
                 f'<div class="gen">{escape(item["original"])}</div>',
                 f'<div class="gen">{escape(item["final"])}</div>'] for item in task["items"]]
        parts.append(f"<h3>{escape(name)}</h3>"
                     + table(["prompt / text", f"original ({original})", f"final ({final})"], rows, raw=True))
    if not parts:
        return ""
    note = "<p>Greedy outputs of the original and the final model on the same prompts (the first of each task).</p>"
    return section("Sample generations", note + "".join(parts))


def _plain_entry(models: dict[str, dict[str, float]], reference: str, label: str, metric: str) -> dict[str, Any]:
    """An eval manifest without per-item figures (older runs): the value and its change, no interval."""
    value, base = models[label].get(metric), models.get(reference, {}).get(metric)
    entry: dict[str, Any] = {"value": value}
    if label != reference and is_number(value) and is_number(base):
        entry["delta"] = value - base
    return entry


def _figure_name(metric: str, sources: dict[str, str | None], entry: dict[str, Any]) -> str:
    source = metric.rsplit(" ", 1)[0]
    language = f" <small>({escape(sources[source])})</small>" if sources.get(source) else ""
    better = entry.get("lower_is_better")
    hint = "" if better is None else f" <small>{'lower' if better else 'higher'} is better</small>"
    return f"{escape(metric)}{language}{hint}"


def _css(verdict: str | None) -> str:
    return {"worse": "regression", "better": "better"}.get(verdict or "", "")


def _rowspan_table(columns: list[str], rows: list[tuple[str | None, list[str]]], classes: list[str]) -> str:
    head = "<thead><tr>" + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr></thead>"
    body = []
    for (first, cells), css in zip(rows, classes, strict=True):
        attribute = f' class="{css}"' if css else ""
        body.append(f"<tr{attribute}>" + (first or "") + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _bpc_plot(models: dict[str, dict[str, float]], figures: dict[str, dict[str, Any]]) -> str:
    series: dict[str, dict[str, float]] = {}
    intervals: dict[str, dict[str, tuple[float, float]]] = {}
    for metric in columns_of(models.values()):
        if not metric.endswith(" bpc"):
            continue
        group = metric.removesuffix(" bpc")
        for label, headline in models.items():
            if is_number(headline.get(metric)):
                series.setdefault(group, {})[label] = headline[metric]
                entry = figures.get(label, {}).get(metric, {})
                if is_number(entry.get("low")) and is_number(entry.get("high")):
                    intervals.setdefault(group, {})[label] = (entry["low"], entry["high"])
    return grouped_bar_svg(series, "bits per character (lower is better)", intervals) if series else ""
