"""The `eval` pipeline stage: evaluate every model the run produced (and the ones it started from).

Outputs `<run>/eval/<model>.json` per model plus `comparison.md` / `comparison.csv`. The manifest holds each
model's headline numbers (`<source> bpc` and `<source> tok/word` for every eval source, MC accuracy, copy
scores, ...), and, from the per-item data the tasks keep, every figure's 95 % interval, its change against
the reference model (the original) with a paired interval, the regressions among those changes, what each
stage changed, and a few generations of the original and the final model (`changes.py`, `intervals.py`).
What is measured is the registered eval tasks the section asks for (`evaluate/tasks.py`).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.evaluate.changes import figure_table, regressions, stage_changes
from langadapt.evaluate.config import RUN_MODELS, EvalConfig
from langadapt.evaluate.intervals import ItemScores
from langadapt.evaluate.runner import PreparedTask, comparison_csv, comparison_markdown, evaluate_model
from langadapt.evaluate.tasks import ModelSpec, active_tasks, check_language, eval_config_schema
from langadapt.pipeline import StageContext, pipeline_order, registered_stages, stage
from langadapt.preflight import input_files_checked
from langadapt.runstore import write_json

SAMPLES = 4  # generations per task shown side by side in the report
SUMMARY_SOURCES = 4  # more target + English sources than this: the summary shows the target ones + one English


def model_label(ref: str) -> str:
    name = Path(ref.removeprefix("builtin:").rstrip("/")).name or ref
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def entry_label(entry: str) -> str:
    """The label an `eval.models` entry is reported under: base/instruct and stage names as they are, a
    model reference by its folder name."""
    return entry if entry in RUN_MODELS or entry in _model_stages() else model_label(entry)


def _model_stages() -> dict[str, bool]:
    """Registered stages that write a model, and whether it is a chat model."""
    return {name: item.chat for name, item in registered_stages().items() if "model" in item.produces}


def _section(cfg: RunConfig) -> EvalConfig:
    section = cfg.section("eval")
    assert isinstance(section, EvalConfig)
    return section


def model_specs(cfg: RunConfig, ctx: StageContext) -> tuple[list[ModelSpec], list[str]]:
    """The models to evaluate, in config order, and the names skipped because the run lacks them."""
    section = _section(cfg)
    produced = ctx.stage_models()
    stage_chat = _model_stages()
    wanted = section.models or [*RUN_MODELS, *stage_chat]
    chat_models = set(section.chat_models if section.chat_models is not None else
                      ["instruct", *(name for name, chat in stage_chat.items() if chat)])
    specs, skipped, seen = [], [], set()
    for entry in wanted:
        label = entry_label(entry)
        if entry in RUN_MODELS:
            ref = getattr(cfg.models, entry)
            tokenizer = ctx.tokenizer_for(ref) if ref is not None else None
        elif entry in stage_chat:
            ref, tokenizer = produced.get(entry, (None, False))[0], None
        else:
            ref, tokenizer = entry, None
        if ref is None:
            skipped.append(entry)
            continue
        if label in seen:
            raise LangadaptError(f"eval.models names '{label}' twice — list each model once")
        seen.add(label)
        specs.append(ModelSpec(label, ref, label in chat_models, tokenizer))
    return specs, skipped


def _extra_refs(section: EvalConfig) -> list[str]:
    stages = _model_stages()
    return [m for m in section.models or [] if m not in RUN_MODELS and m not in stages]


def _task_files(cfg: RunConfig) -> Iterable[str]:
    section = _section(cfg)
    for task, setting in active_tasks(section):
        yield from task.input_files(setting)
    yield from _extra_refs(section)


def _preflight(cfg: RunConfig) -> None:
    from langadapt.models import check_model_ref

    section = _section(cfg)
    for task, setting in active_tasks(section):
        task.preflight(setting, cfg)
    for ref in _extra_refs(section):
        check_model_ref(ref, trust_remote_code=cfg.models.trust_remote_code)
    _check_eval_languages(cfg)


def _check_eval_languages(cfg: RunConfig) -> None:
    """The first texts of every local eval source with a declared language read as that language (~0.1 s)."""
    from langadapt.data.sources import is_hub_source, iter_documents

    if not input_files_checked():
        return
    for name, source in cfg.data.eval_sources.items():
        if source.language and not is_hub_source(source):
            texts = list(iter_documents(source, name, limit=200))
            check_language(texts, source.language, f"eval source '{name}'", f"data.eval_sources.{name}")


def prepared_tasks(cfg: RunConfig, data_dir: Path) -> list[PreparedTask]:
    """Every configured task with its inputs, read once before any model is loaded."""
    return [(task, setting, task.read_inputs(setting, cfg, data_dir)) for task, setting in active_tasks(_section(cfg))]


@stage("eval", config=eval_config_schema, needs=("data",), consumes=("model",),
       uses=("models", "target_language", "data.eval_sources"), external_inputs=_task_files, preflight=_preflight)
def eval_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    section = _section(cfg)
    specs, skipped = model_specs(cfg, ctx)
    if skipped:
        ctx.log.info("not in this run, skipped: %s", ", ".join(skipped))
    if not specs:
        raise LangadaptError("eval.models names no model of this run — add base or a stage that ran")
    tasks = prepared_tasks(cfg, ctx.inputs["data"])
    reports = []
    for spec in specs:
        ctx.log.info("evaluating %s (%s)", spec.label, spec.ref)
        report = evaluate_model(spec, section, tasks, target_language=cfg.target_language,
                                trust_remote_code=cfg.models.trust_remote_code)
        write_json(ctx.out / f"{spec.label}.json", report)
        reports.append(report)
        gc.collect()
    (ctx.out / "comparison.md").write_text(comparison_markdown(reports), encoding="utf-8")
    (ctx.out / "comparison.csv").write_text(comparison_csv(reports), encoding="utf-8")
    metrics = eval_metrics(cfg, reports, tasks, skipped)
    for line in metrics["warnings"]:
        ctx.log.warning(line)
    return metrics


def eval_metrics(cfg: RunConfig, reports: list[dict[str, Any]], tasks: list[PreparedTask],
                 skipped: list[str]) -> dict[str, Any]:
    """The manifest's metrics: headlines, figures with intervals and changes, regressions, samples, summary."""
    headlines = {r["model"]: r["headline"] for r in reports}
    items = {r["model"]: _item_scores(r, tasks) for r in reports}
    labels = list(headlines)
    reference = "base" if "base" in headlines else labels[0]
    stage_rank = {name: i for i, name in enumerate(pipeline_order())}
    stages = sorted((m for m in labels if m in _model_stages() and m != reference), key=stage_rank.__getitem__)
    chain = [reference, *stages]  # the original, then each stage's model in pipeline order
    table = figure_table(headlines, items, reference)
    found = regressions(table)
    sources = {name: source.language for name, source in cfg.data.eval_sources.items()}
    final = chain[-1] if len(chain) > 1 else labels[-1]
    return {
        "models": headlines, "sources": sources, "reference": reference, "chain": chain, "figures": table,
        "regressions": found, "steps": stage_changes(chain, headlines, items),
        "samples": _samples(reports, tasks, reference, final), "skipped": skipped,
        "warnings": [_regression_line(r, reference) for r in found],
        "summary": _summary(headlines, sources, cfg.target_language, found),
    }


def _item_scores(report: dict[str, Any], tasks: list[PreparedTask]) -> dict[str, ItemScores]:
    scores: dict[str, ItemScores] = {}
    for task, setting, _ in tasks:
        if task.key in report:
            scores.update(task.item_scores(setting, report[task.key]))
    return scores


def _samples(reports: list[dict[str, Any]], tasks: list[PreparedTask], original: str,
             final: str) -> dict[str, Any]:
    """The first generations of each task by the original and the final model, on the same prompts."""
    by_label = {r["model"]: r for r in reports}
    out: dict[str, Any] = {}
    for task, setting, _ in tasks:
        if original == final or task.key not in by_label[original] or task.key not in by_label[final]:
            continue
        before = task.samples(setting, by_label[original][task.key])
        after = task.samples(setting, by_label[final][task.key])
        for name, samples in before.items():
            pairs = zip(samples[:SAMPLES], after.get(name, []), strict=False)
            out[name] = {"original": original, "final": final,
                         "items": [{"prompt": a.prompt, "original": a.output, "final": b.output} for a, b in pairs]}
    return out


def _summary_sources(sources: dict[str, str | None], target: str) -> list[str]:
    """The eval sources `langadapt status` shows: the target-language and English ones (and untagged ones)."""
    targets = [name for name, language in sources.items() if language in (target, None)]
    english = [name for name, language in sources.items() if language == "en"]
    return targets + (english if len(targets) + len(english) <= SUMMARY_SOURCES else english[:1])


def _summary(headlines: dict[str, dict[str, float]], sources: dict[str, str | None], target: str,
             found: list[dict[str, Any]]) -> dict[str, float]:
    """Where the run started and where it ended (first and last model), and how many regressions there are."""
    labels = list(headlines)
    summary: dict[str, float] = {}
    for label in labels[:1] + labels[1:][-1:]:
        headline = headlines[label]
        for name in _summary_sources(sources, target):
            if f"{name} bpc" in headline:
                summary[f"{label} {name} bpc"] = headline[f"{name} bpc"]
        first_mc = next((k for k in headline if k.startswith("mc:")), None)
        if first_mc:
            summary[f"{label} {first_mc}"] = headline[first_mc]
    summary["regressions"] = len(found)  # each one is a line of metrics["warnings"], which status shows
    return summary


def _regression_line(regression: dict[str, Any], reference: str) -> str:
    return (f"regression: {regression['model']} {regression['metric']} {regression['value']:.4g} "
            f"({regression['delta']:+.4g} vs {reference}, 95 % interval {regression['delta_low']:+.4g} to "
            f"{regression['delta_high']:+.4g})")
