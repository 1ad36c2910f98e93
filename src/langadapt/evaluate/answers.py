"""The generation task: answers to a prompt file, their language, ROUGE against references, a judge.

A prompt file has one JSON object per line: `{"prompt": str}` plus optional `"reference"` (scored with
ROUGE-1/2/L F1, for summarisation items). With `pattern`, the share of answers that match a regular
expression (the whole answer, stripped) checks a behaviour automatically — e.g. an instruct child that
always answers inside a template. The target-language answer rate is the share of answers that
offline language ID reads as the target language — an adapted model that drifts back into English shows
up here first. An optional OpenAI-compatible judge grades each answer 1–5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from langadapt.errors import LangadaptError
from langadapt.evaluate.generation import generate_greedy
from langadapt.evaluate.intervals import ItemScores
from langadapt.evaluate.langid import detect_languages
from langadapt.evaluate.taskfile import read_task_records
from langadapt.evaluate.tasks import EvalModel, EvalTask, Sample, TaskOutput, eval_task
from langadapt.judge import Judge, JudgeConfig
from langadapt.preflight import input_files_checked
from langadapt.schema import InputPath, Section

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

@dataclass(frozen=True)
class PromptItem:
    prompt: str
    reference: str | None = None


def read_prompt_file(path: str | Path, task: str = "generate") -> list[PromptItem]:
    items = []
    for where, record in read_task_records(path, f"generate task '{task}'", "prompts"):
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise LangadaptError(f"{where} has no non-empty 'prompt' string — add one")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise LangadaptError(f"{where}: 'reference' must be a string")
        items.append(PromptItem(record["prompt"], reference))
    return items


class UnicodeWordTokenizer:
    """Lower-cased \\w+ words. rouge-score's default tokenizer keeps only [a-z0-9], which deletes every
    Cyrillic word and splits Basque/Lithuanian words at each accented letter."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 with a Unicode-aware tokenizer (no stemming: rouge-score's stemmer is English)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeWordTokenizer())
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references, strict=True)]
    return {name: fmean(s[name].fmeasure for s in scores) for name in ("rouge1", "rouge2", "rougeL")}


def generate_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[PromptItem],
    *,
    language: str,
    chat_template: bool = True,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    judge: JudgeConfig | None = None,
    pattern: str | None = None,
) -> dict[str, Any]:
    """Generate greedy answers and score them; returns metrics plus the answers."""
    run = generate_greedy(model, tokenizer, [item.prompt for item in items], max_new_tokens=max_new_tokens,
                          chat_template=chat_template, batch_size=batch_size)
    answers = [g.text for g in run.outputs]
    languages = detect_languages(answers)
    metrics: dict[str, Any] = {
        "n": len(items),
        "language": language,
        "target_language_rate": round(sum(code == language for code in languages) / len(items), 6),
        "words_per_second": round(run.words_per_second, 3),
        "tokens_per_second": round(run.tokens_per_second, 3),  # decode steps/s after the first token
        "prefill_seconds": round(run.prefill_seconds, 3),
        "mean_answer_words": round(fmean(len(a.split()) for a in answers), 3),
    }
    matches = [re.fullmatch(pattern, a.strip(), flags=re.DOTALL) is not None for a in answers] if pattern else []
    if pattern:
        metrics["pattern"] = pattern
        metrics["pattern_rate"] = round(sum(matches) / len(items), 6)
    with_reference = [(a, item.reference) for a, item in zip(answers, items, strict=True) if item.reference]
    if with_reference:
        rouge = rouge_scores([a for a, _ in with_reference], [r for _, r in with_reference])
        metrics.update({name: round(value, 6) for name, value in rouge.items()})
    grades: list[int | None] = []
    if judge is not None:
        grades = Judge(judge, language).grade_all([(item.prompt, a) for item, a in zip(items, answers, strict=True)])
        valid = [g for g in grades if g is not None]
        metrics["judge_mean"] = round(fmean(valid), 4) if valid else None
    metrics["items"] = [
        {"prompt": item.prompt, "answer": a, "language": lang, **({"judge": grades[k]} if grades else {}),
         **({"matches": matches[k]} if matches else {})}
        for k, (item, a, lang) in enumerate(zip(items, answers, languages, strict=True))
    ]
    return metrics


# --------------------------------------------------------------------------------------------------------
# The eval task: every `eval.generate.<name>` prompt file answered by every model.
# --------------------------------------------------------------------------------------------------------


class GenerateTaskConfig(Section):
    """Answers to a prompt file (`prompt`, optional `reference` for ROUGE)."""

    path: InputPath
    language: str | None = None
    max_items: int | None = Field(default=None, ge=1)
    max_new_tokens: int = Field(default=128, ge=1)
    pattern: str | None = Field(
        default=None, description="regular expression every answer should match in full (stripped); its rate is scored")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern {value!r} is not a regular expression ({exc}) — fix it") from None
        return value


@eval_task
class GenerateTask(EvalTask[dict[str, GenerateTaskConfig], dict[str, list[PromptItem]]]):
    key = "generate"
    annotation = dict[str, GenerateTaskConfig]
    default = Field(default_factory=dict)

    def input_files(self, setting: dict[str, GenerateTaskConfig]) -> list[str]:
        return [str(task.path) for task in setting.values()]

    def preflight(self, setting: dict[str, GenerateTaskConfig], cfg: RunConfig) -> None:
        if not input_files_checked():
            return
        for name, task in setting.items():
            read_prompt_file(task.path, name)

    def read_inputs(self, setting: dict[str, GenerateTaskConfig], cfg: RunConfig,
                    data_dir: Path) -> dict[str, list[PromptItem]]:
        return {name: read_prompt_file(task.path, name)[: task.max_items] for name, task in setting.items()}

    def run(self, setting: dict[str, GenerateTaskConfig], inputs: dict[str, list[PromptItem]],
            model: EvalModel) -> TaskOutput:
        out = TaskOutput({})
        for name, task in setting.items():
            language = task.language or model.target_language
            outcome = generate_task(model.model, model.tokenizer, inputs[name], language=language,
                                    chat_template=model.chat(), max_new_tokens=task.max_new_tokens,
                                    judge=model.section.judge, pattern=task.pattern)
            out.report[name] = outcome
            out.headline[f"gen:{name} {language} rate"] = outcome["target_language_rate"]
            out.headline["gen words/s"] = outcome["words_per_second"]
            for key in ("pattern_rate", "rougeL", "judge_mean"):
                if outcome.get(key) is not None:
                    out.headline[f"gen:{name} {key}"] = outcome[key]
        return out

    def item_scores(self, setting: dict[str, GenerateTaskConfig], report: dict[str, Any]) -> dict[str, ItemScores]:
        """The target-language rate as the share of answers language ID reads as the task's language."""
        scores = {f"gen:{name} {task['language']} rate":
                  ItemScores.successes([item["language"] == task["language"] for item in task["items"]])
                  for name, task in report.items() if "language" in task}
        scores.update({f"gen:{name} pattern_rate": ItemScores.successes([item["matches"] for item in task["items"]])
                       for name, task in report.items() if "pattern_rate" in task})
        return scores

    def samples(self, setting: dict[str, GenerateTaskConfig], report: dict[str, Any]) -> dict[str, list[Sample]]:
        return {f"gen:{name}": [Sample(item["prompt"], item["answer"]) for item in task["items"]]
                for name, task in report.items()}
