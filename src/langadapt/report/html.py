"""One self-contained HTML page that shows what a run (or several runs) produced, hiding nothing.

Everything comes from the stage manifests — numbers, never log lines — so the report can be rebuilt at any
time from the run folders alone. Sections appear only when their stage ran:

- warnings: every stage's `metrics["warnings"]` (regressions beyond their interval, LEP with B = I) and a
  LEP map that is the identity, at the top;
- stages: status, wall time, tokens and the headline numbers of every stage;
- data and tokenizer: per-source corpus figures, chars/token of the new tokenizer vs the old;
- embedding initialisation (with the probe table of `embed.method: auto`);
- training: one loss plot per kind of loss (cross-entropy of cpt/sft, DPO's preference loss);
- LEP: the fitted maps (rows, residual, distance from identity) and the methods compared when present;
- evaluation, what each stage bought, sample generations (`evaluation.py`);
- runs compared: the evaluation tables of other runs side by side (variants: Extended vs Optimized, ...);
- provenance: config hashes and library versions.

Plots are inline SVG (matplotlib); every text from a config or a model is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError
from langadapt.pipeline import headline_metrics, pipeline_order
from langadapt.report.evaluation import evaluation_section, samples_section, stage_changes_section
from langadapt.report.markup import (
    columns_of,
    escape,
    finite,
    flatten,
    fmt,
    is_number,
    page,
    pct,
    seconds,
    section,
    table,
    timestamp,
)
from langadapt.report.plots import bar_svg, lines_svg
from langadapt.report.variants import variants_section
from langadapt.runstore import RunStore
from langadapt.status import stage_warnings

IDENTITY_DEVIATION = 1e-6  # a fitted LEP map closer than this to the identity is a plain swap


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
    eval_metrics = run.manifests.get("eval", {}).get("metrics", {})
    sections = [
        _overview(run),
        _warnings_section(run),
        _stages_table(run),
        _data_section(run),
        _vocab_section(run),
        _embed_section(run),
        _training_section(run),
        _lep_section(run),
        evaluation_section(eval_metrics),
        stage_changes_section(eval_metrics),
        samples_section(eval_metrics),
        _comparison_section([run, *others]) if others else "",
        variants_section(run.root),  # a sweep variant: the sweep's comparison table (report/variants.py)
        _provenance_section(run),
    ]
    body = "\n".join(s for s in sections if s)
    return page(title, body, "the run's stage manifests")


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
        ("base model", _model_label(models.get("base", "?"))),
        ("instruct model", _model_label(models.get("instruct") or "—")),
        ("stages complete", " → ".join(run.manifests)),
    ]
    return section("Run", table(["", ""], [[k, v] for k, v in rows], show_header=False))


def _model_label(ref: str) -> str:
    """A constructed builtin says so: it is a fine-tune langadapt built, not a released model."""
    from langadapt.models import CONSTRUCTED_MODELS

    spec = CONSTRUCTED_MODELS.get(ref.removeprefix("builtin:")) if ref.startswith("builtin:") else None
    return f"{ref} — CONSTRUCTED from {spec.parent}: {spec.behaviour} ({spec.recipe})" if spec else ref


def _warnings_section(run: RunView) -> str:
    lines = [f"{name}: {line}" for name, manifest in run.manifests.items() for line in stage_warnings(manifest)]
    lep = run.manifests.get("lep", {}).get("metrics", {})
    if _identity_maps(lep) and not lep.get("same_model"):
        lines.append(f"lep: {_identity_text(lep)}")
    if not lines:
        return ""
    return section("Warnings", "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>", "warnings")


def _stages_table(run: RunView) -> str:
    rows = []
    for name, manifest in run.manifests.items():
        metrics = manifest.get("metrics", {})
        headline = ", ".join(f"{k} = {fmt(v)}" for k, v in headline_metrics(manifest).items())
        tokens, examples = _volume(metrics)
        rows.append([name, timestamp(manifest.get("ended_at")), seconds(manifest.get("wall_seconds")), fmt(tokens),
                     fmt(examples), headline])
    total = sum(m.get("wall_seconds") or 0 for m in run.manifests.values())
    note = (f"<p>Total wall time {seconds(total)}. Tokens: cpt — tokens trained on (steps × batch × context); "
            "sft/dpo — tokens of their training examples, when their data statistics count them; pack — tokens "
            "packed.</p>")
    return section("Stages", table(["stage", "ended (UTC)", "wall", "tokens", "examples", "headline"], rows) + note)


def _volume(metrics: dict[str, Any]) -> tuple[int | None, int | None]:
    """(tokens, examples) a stage processed, from what its manifest records."""
    data = metrics.get("data") if isinstance(metrics.get("data"), dict) else {}
    tokens = metrics.get("tokens_seen", data.get("tokens", metrics.get("tokens")))
    examples = data.get("examples")
    return (tokens if is_number(tokens) else None), (examples if is_number(examples) else None)


def _data_section(run: RunView) -> str:
    metrics = run.manifests.get("data", {}).get("metrics", {})
    groups = [
        (label, metrics.get(key) or {})
        for label, key in (("training sources", "sources"), ("evaluation texts", "eval"))
    ]
    base_columns = ["language", "documents", "characters", "words", "tokens", "tokens_per_word", "chars_per_token"]
    parts = []
    for label, sources in groups:
        if isinstance(sources, dict) and sources:
            sampled = any(isinstance(s, dict) and "tokens_estimated_from" in s for s in sources.values())
            columns = [*base_columns, "tokens_estimated_from"] if sampled else base_columns  # token_count_every > 1
            rows = [
                [name, *[fmt(stats.get(c)) for c in columns]]
                for name, stats in sources.items()
                if isinstance(stats, dict)
            ]
            parts.append(f"<h3>{escape(label)}</h3>" + table(["source", *columns], rows))
    mix = metrics.get("mix") or run.manifests.get("pack", {}).get("metrics", {}).get("mix")
    if isinstance(mix, dict) and mix.get("requested_token_share"):
        requested = mix["requested_token_share"]
        achieved = mix.get("achieved_token_share", {})
        repeats = mix.get("repeats", {})
        rows = [[s, pct(requested.get(s)), pct(achieved.get(s)), fmt(repeats.get(s))] for s in requested]
        parts.append("<h3>mixture (token shares)</h3>" + table(["source", "requested", "achieved", "repeats"], rows))
    packing = run.manifests.get("pack", {}).get("metrics", {}).get("packing_efficiency")
    if packing is not None:
        parts.append(f"<p>packing efficiency: <b>{pct(packing)}</b> real tokens per block token</p>")
    return section("Data", "".join(parts)) if parts else ""


def _vocab_section(run: RunView) -> str:
    summary = run.manifests.get("vocab", {}).get("metrics", {}).get("summary", {})
    if not summary:
        return ""
    ratios = {k.removesuffix(" ×chars/tok"): v for k, v in summary.items() if k.endswith("×chars/tok")}
    facts = table(
        ["", ""], [[k, fmt(v)] for k, v in summary.items() if not k.endswith("×chars/tok")], show_header=False
    )
    plot = bar_svg(ratios, "chars/token, new ÷ original", reference=1.0) if ratios else ""
    return section("Tokenizer", facts + plot)


def _embed_section(run: RunView) -> str:
    """The init method and, for `embed.method: auto`, the probe table (step-0 bits/char of each method)."""
    metrics = run.manifests.get("embed", {}).get("metrics", {})
    if not metrics:
        return ""
    facts = table(["", ""], [[k, fmt(metrics.get(k))] for k in ("method", "new_rows", "fallback_rows", "init_seconds")],
                  show_header=False)
    probe = metrics.get("probe")
    if not probe:
        return section("Embedding initialisation", facts)
    original = probe.get("original", {})
    rows = [["original", fmt(original.get("target_bpc")), fmt(original.get("english_bpc")), "", "", ""]]
    rows += [[m["method"], fmt(m.get("target_bpc")), fmt(m.get("english_bpc")), fmt(m.get("english_regression")),
              fmt(m.get("fallback_rows")), fmt(m.get("init_seconds"))] for m in probe.get("methods", [])]
    probe_table = table(["method", "target bits/char", "English bits/char", "English regression", "fallback rows",
                         "init s"], rows)
    note = (
        f"<p>chosen: <b>{escape(probe.get('chosen'))}</b> (English limit {escape(fmt(probe.get('english_limit')))}, "
        f"{'met' if probe.get('limit_met') else 'NOT met by any method'}; held-out training documents)</p>"
    )
    return section("Embedding initialisation", facts + probe_table + note)


def loss_kind(metrics: dict[str, Any]) -> str:
    """What a stage's `loss_curve` measures: DPO's preference loss (it records `loss_type`), else cross-entropy."""
    if metrics.get("loss_type"):
        return f"DPO loss ({metrics['loss_type']})"
    return "cross-entropy (nats/token)"


def _training_section(run: RunView) -> str:
    kinds: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name, manifest in run.manifests.items():
        metrics = manifest.get("metrics", {})
        curve = metrics.get("loss_curve")
        if isinstance(curve, list) and curve:
            points = [(p["step"], p["loss"]) for p in curve if finite(p.get("loss")) and p.get("step") is not None]
            if points:
                kinds.setdefault(loss_kind(metrics), {})[name] = points
    if not kinds:
        return ""
    plots = "".join(f"<h3>{escape(kind)}</h3>" + lines_svg(curves, "step", kind) for kind, curves in kinds.items())
    return section("Training", "<p>One plot per kind of loss: losses of different kinds are not on one scale.</p>"
                   + plots)


def _identity_maps(lep: dict[str, Any]) -> list[str]:
    """The fitted maps (not `swap`, whose map is the identity by design) that are the identity."""
    if lep.get("method") == "swap":
        return []
    return [name for name, fit in (lep.get("maps") or {}).items()
            if is_number(fit.get("identity_deviation")) and fit["identity_deviation"] < IDENTITY_DEVIATION]


def _identity_text(lep: dict[str, Any]) -> str:
    maps = ", ".join(_identity_maps(lep)) or "every map"
    cause = "models.instruct is models.base" if lep.get("same_model") else "the fitted map is the identity"
    return (f"{cause} ({maps}: distance from identity < {IDENTITY_DEVIATION:g}) — LEP propagated nothing an instruct "
            "model learned; its result is the donor's rows in the base's body")


def _lep_section(run: RunView) -> str:
    metrics = run.manifests.get("lep", {}).get("metrics", {})
    if not metrics:
        return ""
    parts = []
    if metrics.get("same_model") or _identity_maps(metrics):
        parts.append(f'<p class="warning">⚠ {escape(_identity_text(metrics))}</p>')
    maps = metrics.get("maps") or {}
    if maps:
        rows = [[name, fmt(fit.get("fit_rows")), fmt(fit.get("residual")), fmt(fit.get("identity_deviation"))]
                for name, fit in maps.items()]
        parts.append(f"<p>method <b>{escape(metrics.get('method', '?'))}</b></p>"
                     + table(["matrix", "rows fitted on", "relative residual", "distance from identity"], rows))
    methods = metrics.get("methods")
    if isinstance(methods, dict) and methods:
        columns = columns_of(v for v in methods.values() if isinstance(v, dict))
        rows = [
            [name, *(fmt(values.get(c)) for c in columns)]
            for name, values in methods.items()
            if isinstance(values, dict)
        ]
        parts.append("<h3>methods compared</h3>" + table(["method", *columns], rows))
    skip = {"maps", "methods", "summary", "warnings"}
    flat = {k: v for k, v in flatten({k: v for k, v in metrics.items() if k not in skip}).items() if is_number(v)}
    parts.append(table(["metric", "value"], [[k, fmt(v)] for k, v in flat.items()]))
    return section("Learned Embedding Propagation", "".join(parts))


def _comparison_section(runs: list[RunView]) -> str:
    rows = []
    all_models = [(run, label, values) for run in runs for label, values in run.evaluation.items()]
    metrics = columns_of(values for _, _, values in all_models)
    for run, label, values in all_models:
        rows.append([run.name, label, *[fmt(values.get(m)) for m in metrics]])
    if not rows:
        return section("Runs compared", "<p>None of the runs has an evaluation stage.</p>")
    return section("Runs compared", table(["run", "model", *metrics], rows))


def _provenance_section(run: RunView) -> str:
    rows = [
        [name, m.get("config_hash", ""), m.get("fingerprint", ""), m.get("started_at", "")]
        for name, m in run.manifests.items()
    ]
    versions = next(iter(run.manifests.values()), {}).get("versions", {})
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items())
    return section("Provenance", table(["stage", "config hash", "fingerprint", "started"], rows)
                   + f"<p><small>{escape(version_text)}</small></p>")
