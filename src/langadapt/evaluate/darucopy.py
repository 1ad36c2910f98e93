"""DaruCopy (Darumeru / llmtf_open `CopyText`): can the model repeat a text verbatim?

A vocabulary-adapted model that copies badly has either lost the new tokens (it spells words with the
old fine-grained ones, so its output is much longer in tokens) or garbles the text. Two metrics:

- **sentence** copy, `len` = min(p/s, s/p): p = tokens the model generated, s = tokens of the reference
  under the evaluated model's own tokenizer, capped at the generation budget (128 in Darumeru);
- **paragraph** copy, `lcs` = 1 when the characters of difflib's matching blocks between prediction and
  reference, divided by len(prediction), reach 0.99 (character level; a correct but truncated copy passes,
  as in the reference code). An empty output scores 0 in both.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from langadapt.errors import LangadaptError
from langadapt.evaluate.generation import Generation, generate_greedy
from langadapt.evaluate.intervals import ItemScores
from langadapt.evaluate.tasks import (
    EvalModel,
    EvalTask,
    Sample,
    TaskOutput,
    eval_task,
    eval_texts,
    unknown_eval_source,
)
from langadapt.schema import InputPath, Section

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

log = logging.getLogger("langadapt.eval")

CopyKind = Literal["sentence", "paragraph"]

# Darumeru's generation budgets: 128 new tokens for a sentence, 1024 for a paragraph.
DEFAULT_MAX_NEW_TOKENS: dict[str, int] = {"sentence": 128, "paragraph": 1024}
LCS_THRESHOLD = 0.99

# The instruction per language ({text} is the text to copy). Override with `instruction=`.
COPY_INSTRUCTIONS: dict[str, str] = {
    "en": "Copy the following text exactly, without changing anything:\n\n{text}",
    "eu": "Kopiatu hurrengo testua zehazki, ezer aldatu gabe:\n\n{text}",
    "ru": "Скопируйте следующий текст дословно, ничего не меняя:\n\n{text}",
    "lt": "Tiksliai nukopijuokite šį tekstą nieko nekeisdami:\n\n{text}",
}


def length_score(generated_tokens: int, reference_tokens: int, cap: int = DEFAULT_MAX_NEW_TOKENS["sentence"]) -> float:
    """DaruCopy `len`: min(p/s, s/p) with s = min(reference tokens, cap); 0 for an empty output."""
    s = min(reference_tokens, cap)
    if generated_tokens <= 0 or s <= 0:
        return 0.0
    return min(generated_tokens / s, s / generated_tokens)


def lcs_ratio(prediction: str, reference: str) -> float:
    """Characters in difflib's matching blocks / len(prediction), both stripped; 0 for an empty output."""
    prediction, reference = prediction.strip(), reference.strip()
    if not prediction:
        return 0.0
    matcher = difflib.SequenceMatcher(None, prediction, reference, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(prediction)


def lcs_score(prediction: str, reference: str, threshold: float = LCS_THRESHOLD) -> float:
    """DaruCopy `lcs`: 1.0 when `lcs_ratio` reaches the threshold, else 0.0."""
    return 1.0 if lcs_ratio(prediction, reference) >= threshold else 0.0


@dataclass(frozen=True)
class CopyResult:
    kind: CopyKind
    score: float  # mean `len` (sentence) or mean `lcs` (paragraph)
    exact: float  # share of outputs identical to the reference (stripped)
    chars_per_generated_token: float  # how long the tokens the model uses are (Darumeru logs it too)
    words_per_second: float  # decode speed × words per token of what the model wrote (any language)
    reference_words_per_second: float  # decode speed × words per token of the texts to copy, under its tokenizer
    items: list[dict[str, Any]]

    def to_dict(self, *, with_items: bool = True) -> dict[str, Any]:
        summary = {
            "kind": self.kind, "score": round(self.score, 6), "exact": round(self.exact, 6),
            "chars_per_generated_token": round(self.chars_per_generated_token, 4),
            "words_per_second": round(self.words_per_second, 3),
            "reference_words_per_second": round(self.reference_words_per_second, 3), "n": len(self.items),
        }
        return {**summary, "items": self.items} if with_items else summary


def score_copies(
    tokenizer: PreTrainedTokenizerBase, references: list[str], outputs: list[Generation], kind: CopyKind,
    max_new_tokens: int,
) -> tuple[float, list[dict[str, Any]]]:
    """Per-item DaruCopy scores of already generated outputs and their mean."""
    items = []
    for reference, output in zip(references, outputs, strict=True):
        if kind == "sentence":
            ref_tokens = len(tokenizer(reference, add_special_tokens=False)["input_ids"])
            score = length_score(output.tokens, ref_tokens, cap=max_new_tokens)
            detail: dict[str, Any] = {"reference_tokens": ref_tokens}
        else:
            ratio = lcs_ratio(output.text, reference)
            score = 1.0 if ratio >= LCS_THRESHOLD else 0.0
            detail = {"lcs_ratio": round(ratio, 6)}
        items.append({"reference": reference, "prediction": output.text, "generated_tokens": output.tokens,
                      "score": score, "exact": output.text == reference.strip(), **detail})
    return (fmean(item["score"] for item in items) if items else 0.0), items


def copy_task(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    kind: CopyKind,
    language: str = "en",
    instruction: str | None = None,
    chat_template: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
) -> CopyResult:
    """Ask the model to copy each text (greedy), then score the outputs with DaruCopy's metric."""
    max_new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS[kind]
    template = instruction or COPY_INSTRUCTIONS.get(language, COPY_INSTRUCTIONS["en"])
    prompts = [template.format(text=text) for text in texts]
    run = generate_greedy(model, tokenizer, prompts, max_new_tokens=max_new_tokens, chat_template=chat_template,
                          batch_size=batch_size)
    score, items = score_copies(tokenizer, texts, run.outputs, kind, max_new_tokens)
    chars = sum(len(g.text) for g in run.outputs)
    tokens = sum(g.tokens for g in run.outputs)
    exact = fmean(item["exact"] for item in items) if items else 0.0
    reference_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    reference_words = sum(len(text.split()) for text in texts)
    writes = run.tokens_per_second * reference_words / reference_tokens if reference_tokens else float("nan")
    return CopyResult(kind, score, exact, chars / tokens if tokens else 0.0, run.words_per_second, writes, items)


# --------------------------------------------------------------------------------------------------------
# The eval task: every `eval.copy.<name>` set of held-out texts, copied by every model.
# --------------------------------------------------------------------------------------------------------


class CopyTaskConfig(Section):
    """DaruCopy on held-out texts: `source` names a data eval source, or `path` a JSONL with `text`."""

    kind: CopyKind
    source: str | None = None
    path: InputPath | None = None
    language: str | None = None
    min_chars: int = Field(default=0, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    max_items: int | None = Field(default=20, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1, description="default: 128 sentence, 1024 paragraph")
    instruction: str | None = Field(default=None, description="with {text}; default: per language")
    batch_size: int = Field(default=16, ge=1, description="prompts generated together (greedy, left-padded)")
    models: list[str] | None = Field(
        default=None, min_length=1, description="eval labels to run on (default: every evaluated model); "
        "generation is the slow part of an eval on CPU")

    @model_validator(mode="after")
    def _one_origin(self) -> CopyTaskConfig:
        if (self.source is None) == (self.path is None):
            raise ValueError("set exactly one of source (a data.eval_sources name) or path (a JSONL file)")
        return self


@eval_task
class CopyTask(EvalTask[dict[str, CopyTaskConfig], dict[str, list[str]]]):
    key = "copy"
    attribute = "copy_tasks"  # `copy` is a pydantic method name
    annotation = dict[str, CopyTaskConfig]
    default = Field(default_factory=dict, alias="copy")

    def input_files(self, setting: dict[str, CopyTaskConfig]) -> list[str]:
        return [str(task.path) for task in setting.values() if task.path is not None]

    def preflight(self, setting: dict[str, CopyTaskConfig], cfg: RunConfig) -> None:
        from langadapt.evaluate.config import EvalConfig
        from langadapt.evaluate.stages import entry_label

        section = cfg.section("eval")
        listed = section.models if isinstance(section, EvalConfig) else None
        evaluated = None if listed is None else {entry_label(m) for m in listed}  # None: every model
        for name, task in setting.items():
            problem = task.source is not None and unknown_eval_source(cfg, task.source, f"eval.copy.{name}.source")
            if problem:
                raise LangadaptError(problem)
            missing = [m for m in task.models or [] if evaluated is not None and m not in evaluated]
            if missing:
                raise LangadaptError(
                    f"eval.copy.{name}.models names {', '.join(map(repr, missing))}, which eval.models "
                    "does not evaluate — add it to eval.models or remove it here"
                )

    def read_inputs(self, setting: dict[str, CopyTaskConfig], cfg: RunConfig, data_dir: Path) -> dict[str, list[str]]:
        from langadapt.evaluate.runner import read_text_file

        texts = {}
        for name, task in setting.items():
            if task.source is not None:
                pool = eval_texts(data_dir, task.source, language=cfg.data.eval_sources[task.source].language)
            else:
                pool = read_text_file(task.path)
            chosen = [
                t for t in pool if len(t) >= task.min_chars and (task.max_chars is None or len(t) <= task.max_chars)
            ]
            if not chosen:
                raise LangadaptError(f"eval.copy.{name}: no text has between {task.min_chars} and {task.max_chars} "
                                     "characters — widen min_chars/max_chars")
            texts[name] = chosen[: task.max_items]
        return texts

    def run(self, setting: dict[str, CopyTaskConfig], inputs: dict[str, list[str]], model: EvalModel) -> TaskOutput:
        out = TaskOutput({})
        chat = model.chat()
        for name, task in setting.items():
            if task.models is not None and model.spec.label not in task.models:
                continue
            result = copy_task(model.model, model.tokenizer, inputs[name], kind=task.kind,
                               language=task.language or model.target_language, instruction=task.instruction,
                               chat_template=chat, max_new_tokens=task.max_new_tokens, batch_size=task.batch_size)
            out.report[name] = {**result.to_dict(), "chat_template": chat}
            out.headline[_label(name, task.kind)] = round(result.score, 4)
            out.headline[f"copy:{name} exact"] = round(result.exact, 4)
            out.headline.setdefault("gen words/s", round(result.words_per_second, 3))
            out.headline[f"copy:{name} words/s"] = round(result.reference_words_per_second, 3)
            log.info("%s: copy %s %.3f", model.spec.label, name, result.score)
        return out

    def item_scores(self, setting: dict[str, CopyTaskConfig], report: dict[str, Any]) -> dict[str, ItemScores]:
        """`len` as the mean of per-item length scores; `lcs` (0/1 per item) and exact match as rates."""
        scores = {}
        for name, task in report.items():
            values = [item["score"] for item in task["items"]]
            sentence = task["kind"] == "sentence"
            scores[_label(name, task["kind"])] = ItemScores.mean(values) if sentence else ItemScores.successes(values)
            scores[f"copy:{name} exact"] = ItemScores.successes([bool(item["exact"]) for item in task["items"]])
        return scores

    def samples(self, setting: dict[str, CopyTaskConfig], report: dict[str, Any]) -> dict[str, list[Sample]]:
        return {f"copy:{name}": [Sample(item["reference"], item["prediction"]) for item in task["items"]]
                for name, task in report.items()}


def _label(name: str, kind: str) -> str:
    return f"copy:{name} {'len' if kind == 'sentence' else 'lcs'}"
