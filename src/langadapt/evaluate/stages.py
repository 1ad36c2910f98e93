"""The `eval` pipeline stage: evaluate every model the run produced (and the ones it started from).

Outputs `<run>/eval/<model>.json` per model plus `comparison.md` / `comparison.csv`; the manifest holds each
model's headline numbers (target and English bits/char — the forgetting check —, tokens/word, MC accuracy,
copy scores). What is measured is the registered eval tasks the section asks for (`evaluate/tasks.py`).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.evaluate.config import RUN_MODELS, EvalConfig
from langadapt.evaluate.runner import comparison_csv, comparison_markdown, evaluate_model
from langadapt.evaluate.tasks import ModelSpec, active_tasks, eval_config_schema
from langadapt.pipeline import StageContext, registered_stages, stage
from langadapt.runstore import write_json


def _label(ref: str) -> str:
    name = Path(ref.removeprefix("builtin:").rstrip("/")).name or ref
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


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
        if entry in RUN_MODELS:
            ref = getattr(cfg.models, entry)
            label, tokenizer = entry, ctx.tokenizer_for(ref) if ref is not None else None
        elif entry in stage_chat:
            ref, label, tokenizer = produced.get(entry, (None, False))[0], entry, None
        else:
            ref, label, tokenizer = entry, _label(entry), None
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


@stage("eval", config=eval_config_schema, needs=("data",), consumes=("model",),
       uses=("models", "target_language", "data.eval_sources"), external_inputs=_task_files, preflight=_preflight)
def eval_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    section = _section(cfg)
    specs, skipped = model_specs(cfg, ctx)
    if skipped:
        ctx.log.info("not in this run, skipped: %s", ", ".join(skipped))
    if not specs:
        raise LangadaptError("eval.models names no model of this run — add base or a stage that ran")
    # Every task reads its inputs once, before any model is loaded.
    tasks = [(task, setting, task.read_inputs(setting, cfg, ctx.inputs["data"]))
             for task, setting in active_tasks(section)]
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

    # The headline compares where the run started with where it ended; the full table is in comparison.md.
    summary: dict[str, float] = {}
    target = cfg.target_language
    for report in reports[:1] + reports[1:][-1:]:
        headline = report["headline"]
        for key in (f"{target} bpc", "en bpc"):
            if key in headline:
                summary[f"{report['model']} {key}"] = headline[key]
        first_mc = next((k for k in headline if k.startswith("mc:")), None)
        if first_mc:
            summary[f"{report['model']} {first_mc}"] = headline[first_mc]
    return {"models": {r["model"]: r["headline"] for r in reports}, "skipped": skipped, "summary": summary}
