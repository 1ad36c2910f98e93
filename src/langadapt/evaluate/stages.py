"""The `eval` pipeline stage: evaluate every model the run produced (and the ones it started from).

Outputs `<run>/eval/<model>.json` per model plus `comparison.md` / `comparison.csv`; the manifest holds each
model's headline numbers (target and English bits/char — the forgetting check —, tokens/word, MC accuracy,
copy scores).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.evaluate.config import RUN_MODELS, STAGE_MODELS, EvalConfig
from langadapt.evaluate.runner import (
    EvalInputs,
    ModelSpec,
    TextSet,
    comparison_csv,
    comparison_markdown,
    evaluate_model,
    read_task_inputs,
    read_text_file,
)
from langadapt.pipeline import StageContext, stage
from langadapt.preflight import input_files_checked
from langadapt.runstore import write_json


def _label(ref: str) -> str:
    name = Path(ref.removeprefix("builtin:").rstrip("/")).name or ref
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def model_specs(cfg: RunConfig, inputs: dict[str, Path]) -> tuple[list[ModelSpec], list[str]]:
    """The models to evaluate, in config order, and the names skipped because the run lacks them."""
    section: EvalConfig = cfg.eval  # type: ignore[assignment]
    specs, skipped, seen = [], [], set()
    for entry in section.models:
        if entry in RUN_MODELS:
            ref = getattr(cfg.models, entry)
            label = entry
        elif entry in STAGE_MODELS:
            folder = inputs.get(entry)
            ref = str(folder / "model") if folder is not None and (folder / "model").is_dir() else None
            label = entry
        else:
            ref, label = entry, _label(entry)
        if ref is None:
            skipped.append(entry)
            continue
        if label in seen:
            raise LangadaptError(f"eval.models names '{label}' twice — list each model once")
        seen.add(label)
        specs.append(ModelSpec(label, ref, label in section.chat_models))
    return specs, skipped


def _extra_refs(section: EvalConfig) -> list[str]:
    return [m for m in section.models if m not in RUN_MODELS and m not in STAGE_MODELS]


def _task_files(cfg: RunConfig) -> Iterable[str]:
    section: EvalConfig = cfg.eval  # type: ignore[assignment]
    for task in section.mc.values():
        yield str(task.path)
        if task.fewshot_path:
            yield str(task.fewshot_path)
    for copy in section.copy_tasks.values():
        if copy.path:
            yield str(copy.path)
    for generate in section.generate.values():
        yield str(generate.path)
    yield from _extra_refs(section)


def _preflight(cfg: RunConfig) -> None:
    from langadapt.models import check_model_ref

    section: EvalConfig = cfg.eval  # type: ignore[assignment]
    sources = set(cfg.data.eval_sources)
    for name in (section.bpc.sources or []) if section.bpc else []:
        if name not in sources:
            raise LangadaptError(f"eval.bpc.sources names '{name}', which is not in data.eval_sources "
                                 f"({', '.join(sorted(sources)) or 'none'}) — add it there or fix the name")
    for name, task in section.copy_tasks.items():
        if task.source is not None and task.source not in sources:
            raise LangadaptError(f"eval.copy.{name}.source '{task.source}' is not in data.eval_sources "
                                 f"({', '.join(sorted(sources)) or 'none'}) — add it there or fix the name")
    if input_files_checked():
        _task_files_preflight(section)
    for ref in _extra_refs(section):
        check_model_ref(ref, trust_remote_code=cfg.models.trust_remote_code)
    if section.lm_eval is not None:
        from langadapt.evaluate.harness import require_lm_eval

        require_lm_eval()


def _task_files_preflight(section: EvalConfig) -> None:
    from langadapt.evaluate.generate import read_prompt_file
    from langadapt.evaluate.mc import read_mc_file

    for name, mc in section.mc.items():
        read_mc_file(mc.path, name)
        if mc.fewshot_path:
            shots = read_mc_file(mc.fewshot_path, f"{name} few-shot")
            if len(shots) < mc.num_fewshot:
                raise LangadaptError(f"eval.mc.{name}: num_fewshot is {mc.num_fewshot} but '{mc.fewshot_path}' "
                                     f"holds {len(shots)} examples — lower num_fewshot or add examples")
    for name, generate in section.generate.items():
        read_prompt_file(generate.path, name)


def _read_texts(data_dir: Path, name: str, limit: int | None) -> list[str]:
    from langadapt.data.corpus import eval_file, read_texts

    return list(islice(read_texts(eval_file(data_dir, name)), limit))


def eval_inputs(cfg: RunConfig, data_dir: Path) -> EvalInputs:
    """Read what every model is evaluated on once: the BPC text sets, each copy task's texts, the task files."""
    from langadapt.evaluate.langid import warn_if_not

    section: EvalConfig = cfg.eval  # type: ignore[assignment]
    inputs = EvalInputs(cfg.target_language)
    if section.bpc is not None:
        for name in section.bpc.sources or list(cfg.data.eval_sources):
            language = cfg.data.eval_sources[name].language
            texts = _read_texts(data_dir, name, section.bpc.max_texts)
            if language:
                warn_if_not(texts, language, f"eval source '{name}'")
            inputs.text_sets.append(TextSet(name, language, texts))
    for name, task in section.copy_tasks.items():
        pool = _read_texts(data_dir, task.source, None) if task.source is not None else read_text_file(task.path)
        chosen = [t for t in pool if len(t) >= task.min_chars and (task.max_chars is None or len(t) <= task.max_chars)]
        if not chosen:
            raise LangadaptError(f"eval.copy.{name}: no text has between {task.min_chars} and {task.max_chars} "
                                 "characters — widen min_chars/max_chars")
        inputs.copy_texts[name] = chosen[: task.max_items]
    read_task_inputs(section, inputs)
    return inputs


@stage("eval", needs=("data",), after=STAGE_MODELS, uses=("models", "target_language", "data.eval_sources"),
       external_inputs=_task_files, preflight=_preflight)
def eval_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    specs, skipped = model_specs(cfg, ctx.inputs)
    if skipped:
        ctx.log.info("not in this run, skipped: %s", ", ".join(skipped))
    if not specs:
        raise LangadaptError("eval.models names no model of this run — add base or a stage that ran")
    inputs = eval_inputs(cfg, ctx.inputs["data"])
    reports = []
    for spec in specs:
        ctx.log.info("evaluating %s (%s)", spec.label, spec.ref)
        report = evaluate_model(spec, cfg.eval, inputs, trust_remote_code=cfg.models.trust_remote_code)
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
