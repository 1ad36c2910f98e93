"""One self-contained HTML page that shows what a run (or several runs) produced.

Everything comes from the stage manifests — numbers, never log lines — so the report can be rebuilt at any
time from the run folders alone. Sections appear only when their stage ran:

- stages: status, wall time and the headline numbers of every stage;
- data and tokenizer: per-source corpus figures, chars/token of the new tokenizer vs the old;
- training: loss curves of every stage that logged a `loss_curve` (cpt, sft, dpo);
- evaluation: every evaluated model × metric, with the change against the first model (usually the
  original), which is where English forgetting shows;
- runs compared: the evaluation tables of other runs side by side (variants: Extended vs Optimized, ...);
- provenance: config hashes and library versions.

Plots are inline SVG (matplotlib), so the page is one file that opens anywhere.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError
from langadapt.pipeline import headline_metrics, pipeline_order
from langadapt.report.variants import variants_section
from langadapt.runstore import RunStore, now_iso


@dataclass
class RunView:
    """The manifests of one run folder, in pipeline order."""

    root: Path
    name: str
    config: dict[str, Any]
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def evaluation(self) -> dict[str, dict[str, float]]:
        """model label → headline metrics, from the eval stage."""
        return self.manifests.get("eval", {}).get("metrics", {}).get("models", {})


def load_run(run_dir: str | Path, *, exclude: tuple[str, ...] = ()) -> RunView:
    store = RunStore.existing(run_dir)
    saved = store.run_config() or {}
    config = saved.get("config", {})
    view = RunView(store.root, config.get("name", store.root.name), config)
    for name in pipeline_order():
        manifest = store.manifest(name) if name not in exclude else None
        if manifest is not None:
            view.manifests[name] = manifest
    if not view.manifests:
        raise LangadaptError(f"'{run_dir}' holds no complete stage — run `langadapt run CONFIG` first")
    return view


def render_report(run: RunView, others: list[RunView] | None = None, title: str | None = None) -> str:
    """The whole HTML page for `run`, with `others` compared in an extra section."""
    others = others or []
    title = title or f"langadapt report — {run.name}"
    sections = [
        _overview(run),
        _stages_table(run),
        _data_section(run),
        _vocab_section(run),
        _embed_section(run),
        _training_section(run),
        _lep_section(run),
        _evaluation_section(run),
        _comparison_section([run, *others]) if others else "",
        variants_section(run.root),  # a sweep variant: the sweep's comparison table (report/variants.py)
        _provenance_section(run),
    ]
    body = "\n".join(s for s in sections if s)
    return _PAGE.format(title=_e(title), body=body, generated=_e(now_iso()))


# --------------------------------------------------------------------------------------------------------
# Sections.
# --------------------------------------------------------------------------------------------------------


def _overview(run: RunView) -> str:
    config = run.config
    models = config.get("models", {})
    rows = [
        ("run", run.name),
        ("folder", str(run.root)),
        ("target language", config.get("target_language", "?")),
        ("base model", models.get("base", "?")),
        ("instruct model", models.get("instruct") or "—"),
        ("stages complete", " → ".join(run.manifests)),
    ]
    return "<section><h2>Run</h2>" + _table(["", ""], [[k, v] for k, v in rows], show_header=False) + "</section>"


def _stages_table(run: RunView) -> str:
    rows = []
    for name, manifest in run.manifests.items():
        headline = ", ".join(f"{k} = {_fmt(v)}" for k, v in headline_metrics(manifest).items())
        rows.append([name, manifest.get("ended_at", ""), _seconds(manifest.get("wall_seconds")), headline])
    return "<section><h2>Stages</h2>" + _table(["stage", "ended", "wall", "headline"], rows) + "</section>"


def _data_section(run: RunView) -> str:
    metrics = run.manifests.get("data", {}).get("metrics", {})
    groups = [(label, metrics.get(key) or {}) for label, key in (("training sources", "sources"), ("evaluation texts", "eval"))]
    columns = ["documents", "characters", "words", "tokens", "tokens_per_word", "chars_per_token"]
    parts = []
    for label, sources in groups:
        if isinstance(sources, dict) and sources:
            rows = [[name, *[_fmt(stats.get(c)) for c in columns]] for name, stats in sources.items() if isinstance(stats, dict)]
            parts.append(f"<h3>{_e(label)}</h3>" + _table(["source", *columns], rows))
    mix = metrics.get("mix") or run.manifests.get("pack", {}).get("metrics", {}).get("mix")
    if isinstance(mix, dict) and mix.get("requested_token_share"):
        requested = mix["requested_token_share"]
        achieved = mix.get("achieved_token_share", {})
        repeats = mix.get("repeats", {})
        rows = [[s, _pct(requested.get(s)), _pct(achieved.get(s)), _fmt(repeats.get(s))] for s in requested]
        parts.append("<h3>mixture (token shares)</h3>" + _table(["source", "requested", "achieved", "repeats"], rows))
    packing = run.manifests.get("pack", {}).get("metrics", {}).get("packing_efficiency")
    if packing is not None:
        parts.append(f"<p>packing efficiency: <b>{_pct(packing)}</b> real tokens per block token</p>")
    return "<section><h2>Data</h2>" + "".join(parts) + "</section>" if parts else ""


def _vocab_section(run: RunView) -> str:
    summary = run.manifests.get("vocab", {}).get("metrics", {}).get("summary", {})
    ratios = {k.removesuffix(" ×chars/tok"): v for k, v in summary.items() if k.endswith("×chars/tok")}
    if not summary:
        return ""
    facts = _table(["", ""], [[k, _fmt(v)] for k, v in summary.items() if k not in {f"{n} ×chars/tok" for n in ratios}], show_header=False)
    plot = _bar_svg(ratios, "chars/token, new ÷ original", reference=1.0) if ratios else ""
    return f"<section><h2>Tokenizer</h2>{facts}{plot}</section>"


def _training_section(run: RunView) -> str:
    curves = {}
    for name, manifest in run.manifests.items():
        curve = manifest.get("metrics", {}).get("loss_curve")
        if isinstance(curve, list) and curve:
            points = [(p["step"], p["loss"]) for p in curve if _finite(p.get("loss")) and p.get("step") is not None]
            if points:
                curves[name] = points
    if not curves:
        return ""
    return "<section><h2>Training</h2>" + _lines_svg(curves, "step", "training loss") + "</section>"


def _embed_section(run: RunView) -> str:
    """The init method and, for `embed.method: auto`, the probe table (step-0 bits/char of each method)."""
    metrics = run.manifests.get("embed", {}).get("metrics", {})
    if not metrics:
        return ""
    facts = _table(["", ""], [[k, _fmt(metrics.get(k))] for k in ("method", "new_rows", "fallback_rows", "init_seconds")],
                   show_header=False)
    probe = metrics.get("probe")
    if not probe:
        return f"<section><h2>Embedding initialisation</h2>{facts}</section>"
    original = probe.get("original", {})
    rows = [["original", _fmt(original.get("target_bpc")), _fmt(original.get("english_bpc")), "", "", ""]]
    rows += [[m["method"], _fmt(m.get("target_bpc")), _fmt(m.get("english_bpc")), _fmt(m.get("english_regression")),
              _fmt(m.get("fallback_rows")), _fmt(m.get("init_seconds"))] for m in probe.get("methods", [])]
    table = _table(["method", "target bits/char", "English bits/char", "English regression", "fallback rows", "init s"], rows)
    note = (f"<p>chosen: <b>{_e(probe.get('chosen'))}</b> (English limit {_fmt(probe.get('english_limit'))}, "
            f"{'met' if probe.get('limit_met') else 'NOT met by any method'}; held-out training documents)</p>")
    return f"<section><h2>Embedding initialisation</h2>{facts}{table}{note}</section>"


def _lep_section(run: RunView) -> str:
    metrics = run.manifests.get("lep", {}).get("metrics", {})
    if not metrics:
        return ""
    flat = {k: v for k, v in _flatten(metrics).items() if not k.startswith("summary.") and _is_number(v)}
    return "<section><h2>Learned Embedding Propagation</h2>" + _table(["metric", "value"], [[k, _fmt(v)] for k, v in flat.items()]) + "</section>"


def _evaluation_section(run: RunView) -> str:
    models = run.evaluation
    if not models:
        return ""
    labels = list(models)
    metrics = _columns(models.values())
    reference = labels[0]
    rows = []
    for label in labels:
        row = [_e(label)]
        for metric in metrics:
            value = models[label].get(metric)
            base = models[reference].get(metric)
            delta = f" <small>({value - base:+.3g})</small>" if label != reference and _is_number(value) and _is_number(base) else ""
            row.append(_e(_fmt(value)) + delta)
        rows.append(row)
    table = _table(["model", *metrics], rows, raw=True)
    note = f"<p>Changes in brackets are against <b>{_e(reference)}</b>. Lower bits per character is better; " \
           "compare models with different tokenizers by bpc, never by token perplexity.</p>"
    bpc = {m: {lab: models[lab][m] for lab in labels if _is_number(models[lab].get(m))} for m in metrics if m.endswith(" bpc")}
    bpc = {m: values for m, values in bpc.items() if values}
    plot = _grouped_bar_svg(bpc, "bits per character (lower is better)") if bpc else ""
    return "<section><h2>Evaluation</h2>" + note + table + plot + "</section>"


def _comparison_section(runs: list[RunView]) -> str:
    rows = []
    all_models = [(run, label, values) for run in runs for label, values in run.evaluation.items()]
    metrics = _columns(values for _, _, values in all_models)
    for run, label, values in all_models:
        rows.append([run.name, label, *[_fmt(values.get(m)) for m in metrics]])
    if not rows:
        return "<section><h2>Runs compared</h2><p>None of the runs has an evaluation stage.</p></section>"
    return "<section><h2>Runs compared</h2>" + _table(["run", "model", *metrics], rows) + "</section>"


def _provenance_section(run: RunView) -> str:
    rows = [[name, m.get("config_hash", ""), m.get("fingerprint", ""), m.get("started_at", "")] for name, m in run.manifests.items()]
    versions = next(iter(run.manifests.values()), {}).get("versions", {})
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items())
    return (
        "<section><h2>Provenance</h2>"
        + _table(["stage", "config hash", "fingerprint", "started"], rows)
        + f"<p><small>{_e(version_text)}</small></p></section>"
    )


# --------------------------------------------------------------------------------------------------------
# Plots (inline SVG) and small formatting helpers.
# --------------------------------------------------------------------------------------------------------


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


def _lines_svg(curves: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str:
    fig, ax = _figure()
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    return _svg(fig)


def _bar_svg(values: dict[str, float], ylabel: str, reference: float | None = None) -> str:
    fig, ax = _figure(width=max(4.0, 1.2 * len(values) + 2))
    ax.bar(list(values), list(values.values()), color="#4c72b0")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def _grouped_bar_svg(series: dict[str, dict[str, float]], ylabel: str) -> str:
    labels = list(dict.fromkeys(label for values in series.values() for label in values))
    fig, ax = _figure(width=max(5.0, 1.1 * len(labels) * len(series) + 2))
    width = 0.8 / len(series)
    for index, (metric, values) in enumerate(series.items()):
        xs = [i + index * width for i in range(len(labels))]
        ax.bar(xs, [values.get(label, math.nan) for label in labels], width=width, label=metric)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return _svg(fig)


def _table(columns: list[str], rows: list[list[Any]], *, show_header: bool = True, raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (for cells this module built itself)."""
    head = "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in columns) + "</tr></thead>" if show_header else ""
    cell = (lambda v: str(v)) if raw else (lambda v: _e(str(v)))
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def _columns(dicts: Any) -> list[str]:
    columns: list[str] = []
    for values in dicts:
        columns += [key for key in values if key not in columns]
    return columns


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if _is_number(value) else "—"


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if _is_number(value) else ""


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
section {{ margin-bottom: 2rem; }}
figure.plot svg {{ max-width: 100%; height: auto; }}
small {{ color: #666; }}
</style></head>
<body><h1>{title}</h1>
{body}
<p><small>generated {generated} by langadapt from the run's stage manifests</small></p>
</body></html>
"""
