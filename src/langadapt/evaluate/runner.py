"""Evaluate one model on everything the `eval:` section asks for and return one JSON-ready report.

The report's `headline` is a flat label → number mapping (`eu bpc`, `en bpc`, `mc:<task> acc`, ...) that
`langadapt eval compare` tabulates across models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.evaluate.config import EvalConfig, McTaskConfig

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.evaluate.generate import PromptItem
    from langadapt.evaluate.mc import McItem

log = logging.getLogger("langadapt.eval")


@dataclass(frozen=True)
class TextSet:
    """Held-out texts with their declared language (an eval source of the data stage)."""

    name: str
    language: str | None
    texts: list[str]


@dataclass(frozen=True)
class ModelSpec:
    label: str
    ref: str  # a local folder (or builtin:/hub ref) loadable by langadapt.models
    chat: bool  # prompt through the chat template where a task says "auto"


@dataclass
class EvalInputs:
    """What every model is evaluated on (read once, shared across models)."""

    target_language: str
    text_sets: list[TextSet] = field(default_factory=list)
    copy_texts: dict[str, list[str]] = field(default_factory=dict)
    mc_items: dict[str, tuple[list[McItem], list[McItem]]] = field(default_factory=dict)  # (items, few-shot)
    prompts: dict[str, list[PromptItem]] = field(default_factory=dict)


def read_task_inputs(cfg: EvalConfig, inputs: EvalInputs) -> None:
    """Read each MC and generation task file once, for every model: (items, shots) and prompts."""
    from langadapt.evaluate.generate import read_prompt_file
    from langadapt.evaluate.mc import read_mc_file

    for name, task in cfg.mc.items():
        items = read_mc_file(task.path, name)[: task.max_items]
        shots = read_mc_file(task.fewshot_path, f"{name} few-shot")[: task.num_fewshot] if task.fewshot_path else []
        inputs.mc_items[name] = (items, shots)
    for name, task in cfg.generate.items():
        inputs.prompts[name] = read_prompt_file(task.path, name)[: task.max_items]


def read_text_file(path: str | Path, field: str = "text", limit: int | None = None) -> list[str]:
    """Texts of a .jsonl[.gz] / .txt[.gz] / .parquet file (the data layer's readers), the first `limit`."""
    from itertools import islice

    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents

    source = SourceConfig(path=str(Path(path).resolve()), text_field=field)
    return list(islice(iter_documents(source, Path(path).name), limit))


def _chat(setting: bool | str, spec: ModelSpec, tokenizer: PreTrainedTokenizerBase) -> bool:
    if setting == "auto":
        return spec.chat and bool(getattr(tokenizer, "chat_template", None))
    return bool(setting)


def run_mc_task(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str, task: McTaskConfig,
                items: list[McItem], shots: list[McItem], language: str, chat: bool, batch_tokens: int) -> dict[str, Any]:
    from langadapt.evaluate.mc import McFormat, evaluate_mc

    fmt = McFormat(language=task.language or language, answer_format=task.answer_format,
                   answer_prefix=task.answer_prefix, chat_template=chat,
                   **({"template": task.template} if task.template else {}))
    result = evaluate_mc(model, tokenizer, items, fmt=fmt, shots=shots, scorings=task.scoring, task=name,
                         batch_tokens=batch_tokens)
    return {**result.to_dict(), "chat_template": chat, "num_fewshot": len(shots)}


def evaluate_model(spec: ModelSpec, cfg: EvalConfig, inputs: EvalInputs, *, trust_remote_code: bool = False) -> dict[str, Any]:
    """Load `spec`'s model once and run the configured measurements; returns the report."""
    from langadapt.evaluate.bpc import bits_per_character
    from langadapt.evaluate.copy import copy_task
    from langadapt.evaluate.generate import JudgeConfig, generate_task
    from langadapt.models import load_model, load_tokenizer, model_summary, resolve

    folder = resolve(spec.ref, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    model = load_model(folder, dtype=cfg.dtype, trust_remote_code=trust_remote_code).eval()
    report: dict[str, Any] = {"model": spec.label, "ref": str(spec.ref), "chat": spec.chat, **model_summary(model)}
    headline: dict[str, float] = {}
    target = inputs.target_language

    if cfg.bpc is not None and inputs.text_sets:
        report["bpc"] = {}
        for text_set in inputs.text_sets:
            result = bits_per_character(model, tokenizer, text_set.texts, max_length=cfg.bpc.max_length,
                                        stride=cfg.bpc.stride)
            report["bpc"][text_set.name] = {"language": text_set.language, **result.to_dict()}
            tag = text_set.language or text_set.name
            headline.setdefault(f"{tag} bpc", round(result.bits_per_char, 4))
            headline.setdefault(f"{tag} tok/word", round(result.tokens_per_word, 4))
            log.info("%s: %s %.4f bits/char, %.3f tokens/word", spec.label, text_set.name, result.bits_per_char,
                     result.tokens_per_word)

    report["mc"] = {}
    for name, task in cfg.mc.items():
        outcome = run_mc_task(model, tokenizer, name, task, *inputs.mc_items[name], target,
                              _chat(task.chat_template, spec, tokenizer), cfg.batch_tokens)
        report["mc"][name] = outcome
        for scoring, accuracy in outcome["accuracy"].items():
            headline[f"mc:{name} {scoring}"] = round(accuracy, 4)
        log.info("%s: mc %s %s", spec.label, name, outcome["accuracy"])

    report["copy"] = {}
    chat_copy = _chat("auto", spec, tokenizer)
    for name, task in cfg.copy_tasks.items():
        result = copy_task(model, tokenizer, inputs.copy_texts[name], kind=task.kind,
                           language=task.language or target, instruction=task.instruction, chat_template=chat_copy,
                           max_new_tokens=task.max_new_tokens)
        report["copy"][name] = {**result.to_dict(), "chat_template": chat_copy}
        headline[f"copy:{name} {'len' if task.kind == 'sentence' else 'lcs'}"] = round(result.score, 4)
        headline.setdefault("gen words/s", round(result.words_per_second, 3))
        log.info("%s: copy %s %.3f", spec.label, name, result.score)

    report["generate"] = {}
    judge = JudgeConfig(cfg.judge.url, cfg.judge.model, cfg.judge.api_key_env) if cfg.judge else None
    for name, task in cfg.generate.items():
        outcome = generate_task(model, tokenizer, inputs.prompts[name], language=task.language or target, chat_template=chat_copy,
                                max_new_tokens=task.max_new_tokens, judge=judge)
        report["generate"][name] = outcome
        headline[f"gen:{name} {task.language or target} rate"] = outcome["target_language_rate"]
        headline["gen words/s"] = outcome["words_per_second"]
        for key in ("rougeL", "judge_mean"):
            if outcome.get(key) is not None:
                headline[f"gen:{name} {key}"] = outcome[key]

    if cfg.lm_eval is not None:
        from langadapt.evaluate.harness import run_lm_eval

        section = cfg.lm_eval
        results = run_lm_eval(model, tokenizer, section.tasks, include_path=section.include_path,
                              num_fewshot=section.num_fewshot, limit=section.limit, batch_size=section.batch_size,
                              apply_chat_template=_chat(section.apply_chat_template, spec, tokenizer))
        report["lm_eval"] = results
        for task_name, metrics in results.items():
            for metric in ("acc", "acc_norm", "exact_match"):
                if isinstance(metrics.get(metric), float):
                    headline[f"lm-eval:{task_name} {metric}"] = round(metrics[metric], 4)

    report["headline"] = headline
    del model
    return report


def comparison_rows(reports: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """One row per model, one column per headline metric (in first-seen order)."""
    columns: list[str] = []
    for report in reports:
        columns += [key for key in report.get("headline", {}) if key not in columns]
    rows = [[report.get("model", "?"), *[report.get("headline", {}).get(c, "") for c in columns]] for report in reports]
    return ["model", *columns], rows


def comparison_markdown(reports: list[dict[str, Any]]) -> str:
    header, rows = comparison_rows(reports)

    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]) + "\n"


def comparison_csv(reports: list[dict[str, Any]]) -> str:
    import csv
    import io

    header, rows = comparison_rows(reports)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def read_reports(paths: list[Path]) -> list[dict[str, Any]]:
    import json

    from langadapt.errors import LangadaptError

    reports = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LangadaptError(f"'{path}' does not exist — pass the per-model JSON files of an eval run") from None
        except json.JSONDecodeError:
            raise LangadaptError(f"'{path}' is not JSON — pass the per-model JSON files of an eval run") from None
        if not isinstance(report, dict) or "headline" not in report:
            raise LangadaptError(f"'{path}' is not an eval report (no 'headline') — pass <run>/eval/<model>.json")
        reports.append(report)
    return reports
