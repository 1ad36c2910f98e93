"""Multiple-choice evaluation from local JSONL: loglik, loglik_norm and first_token scoring.

A task file has one item per line: `{"question": str, "choices": [str, ...], "answer": int}` plus an
optional `"context"` (a passage). Few-shot examples come from a separate file of the same format; the
first `num_fewshot` of them precede every query (Darumeru's protocol).

Scorings:
- `loglik`: Σ log p(continuation tokens | prompt) — lm-evaluation-harness' `acc`;
- `loglik_norm`: the same divided by the characters of the choice — lm-eval's `acc_norm`;
- `first_token`: p(first token of each continuation) after the answer prefix — Darumeru's scoring for
  lettered choices (A/B/C/D), one forward pass per item;
- `mutual_info`: loglik minus the choice's log-likelihood with no prompt (after BOS, else EOS) — lm-eval's
  `acc_mutual_info`. It removes the model's prior for the choice string itself, which per-character
  normalisation does not: an adapted model whose prior over Basque strings changed can lose `loglik_norm`
  while reading the prompt better (docs/benchmarks.md, "cloze scorings").

Requests are encoded exactly as lm-eval encodes them (trailing spaces of the prompt move into the
continuation; the continuation is what the whole string adds after the prompt's tokens), so predictions
match lm-eval's. Speed comes from never re-encoding a prompt: each prompt runs once (batched, left-padded,
only its last position's logits computed), and every choice continues from its cached keys/values.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from langadapt.errors import LangadaptError
from langadapt.evaluate.generation import require_chat_template
from langadapt.evaluate.intervals import ItemScores
from langadapt.evaluate.taskfile import read_task_records
from langadapt.evaluate.tasks import EvalModel, EvalTask, TaskOutput, eval_task
from langadapt.preflight import input_files_checked
from langadapt.schema import InputPath, Section

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

Scoring = Literal["loglik", "loglik_norm", "first_token", "mutual_info"]
AnswerFormat = Literal["letter", "text", "continuation"]  # continuation: the choice goes on from the question
SCORINGS: tuple[Scoring, ...] = ("loglik", "loglik_norm", "first_token", "mutual_info")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# (question label, answer prefix) per language; the prompt words a model of that language expects.
PROMPT_WORDS: dict[str, tuple[str, str]] = {
    "en": ("Question", "Answer:"),
    "eu": ("Galdera", "Erantzuna:"),
    "ru": ("Вопрос", "Ответ:"),
    "lt": ("Klausimas", "Atsakymas:"),
}


@dataclass(frozen=True)
class McItem:
    question: str
    choices: list[str]
    answer: int
    context: str | None = None


def read_mc_file(path: str | Path, task: str = "mc") -> list[McItem]:
    """Read and validate a task file; every problem names the file and line."""
    items = []
    for where, record in read_task_records(path, f"mc task '{task}'", "items"):
        if not isinstance(record, dict):
            raise LangadaptError(f"{where} is not a JSON object — expected question, choices, answer")
        missing = [key for key in ("question", "choices", "answer") if key not in record]
        if missing:
            raise LangadaptError(f"{where} has no field(s) {', '.join(missing)} — add them (fields: "
                                 f"{', '.join(sorted(record)) or 'none'})")
        choices, answer = record["choices"], record["answer"]
        if not isinstance(choices, list) or not choices:
            raise LangadaptError(f"{where}: choices is empty — give at least two answer options")
        if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise LangadaptError(f"{where}: choices must be at least two non-empty strings")
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise LangadaptError(f"{where}: answer {answer!r} is out of range for {len(choices)} choices — "
                                 f"use a 0-based index 0..{len(choices) - 1}")
        context = record.get("context")
        if context is not None and not isinstance(context, str):
            raise LangadaptError(f"{where}: context must be a string")
        items.append(McItem(str(record["question"]), list(choices), answer, context or None))
    return items


@dataclass(frozen=True)
class McFormat:
    """How an item becomes a prompt and its choices continuations.

    `template` fields: {context} (the passage and a blank line, or nothing), {question}, {question_label},
    {options} (lettered choices, one per line, only with answer_format "letter"). The prompt is the
    template followed by a newline and `answer_prefix`; each continuation is " " + letter or choice text.
    """

    language: str = "en"
    answer_format: AnswerFormat = "letter"
    template: str = "{context}{question_label}: {question}\n{options}"
    answer_prefix: str | None = None  # default: the language's word, e.g. "Erantzuna:"
    chat_template: bool = False
    system: str | None = None

    @property
    def prefix(self) -> str:
        return self.answer_prefix if self.answer_prefix is not None else PROMPT_WORDS.get(
            self.language, PROMPT_WORDS["en"])[1]

    def question_block(self, item: McItem) -> str:
        label = PROMPT_WORDS.get(self.language, PROMPT_WORDS["en"])[0]
        options = ""
        if self.answer_format == "letter":
            options = "".join(f"{LETTERS[i]}. {choice}\n" for i, choice in enumerate(item.choices))
        context = f"{item.context}\n\n" if item.context else ""
        return self.template.format(context=context, question=item.question, question_label=label,
                                    options=options).rstrip()

    def answers(self, item: McItem) -> list[str]:
        """The choice strings as the model should write them (without the leading space)."""
        if self.answer_format == "letter":
            return list(LETTERS[: len(item.choices)])
        return list(item.choices)

    def prompt(self, item: McItem, shots: list[McItem], tokenizer: PreTrainedTokenizerBase | None = None) -> str:
        """The full prompt (few-shot examples + query + answer prefix) that every choice continues. A
        `continuation` item is a cloze: the prompt is the question text itself (the start of a passage) and each
        choice is a way the passage could go on (HellaSwag / LAMBADA style, plain text only)."""
        if self.answer_format == "continuation":
            if self.chat_template:
                raise LangadaptError("answer_format continuation scores plain text — set chat_template: false")
            return "\n\n".join([*(f"{s.question} {s.choices[s.answer]}" for s in shots), item.question])
        if not self.chat_template:
            blocks = [f"{self.question_block(s)}\n{self.prefix} {self.answers(s)[s.answer]}" for s in shots]
            return "\n\n".join([*blocks, f"{self.question_block(item)}\n{self.prefix}"])
        if tokenizer is None:
            raise ValueError("a chat prompt needs the tokenizer")
        require_chat_template(tokenizer)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for shot in shots:
            messages += [{"role": "user", "content": self.question_block(shot)},
                         {"role": "assistant", "content": f"{self.prefix} {self.answers(shot)[shot.answer]}"}]
        messages.append({"role": "user", "content": self.question_block(item)})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + self.prefix


@dataclass
class _Request:
    context: list[int]
    continuations: list[list[int]]
    lengths: list[int]  # characters of each choice string (the loglik_norm denominator)
    first_logp: list[float] = field(default_factory=list)
    loglik: list[float] = field(default_factory=list)


def encode_request(tokenizer: PreTrainedTokenizerBase, prompt: str, continuations: list[str], *,
                   add_special_tokens: bool = True) -> tuple[list[int], list[list[int]]]:
    """lm-eval's `_encode_pair` for one prompt and all its continuations."""
    spaces = len(prompt) - len(prompt.rstrip())
    if spaces:
        continuations = [prompt[-spaces:] + c for c in continuations]
        prompt = prompt[:-spaces]
    context = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    wholes = tokenizer([prompt + c for c in continuations], add_special_tokens=add_special_tokens)["input_ids"]
    encoded = []
    for whole, text in zip(wholes, continuations, strict=True):
        tail = whole[len(context):]
        encoded.append(tail or tokenizer(text, add_special_tokens=False)["input_ids"])
    return context, encoded


def encode_unconditional(tokenizer: PreTrainedTokenizerBase, continuations: list[str]) -> _Request:
    """lm-eval's encoding of an empty context: the prefix token (BOS, else EOS), then the continuation."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix is None:
        raise LangadaptError("mutual_info scoring needs a BOS or EOS token in the tokenizer — drop mutual_info "
                             "from eval.mc.<task>.scoring")
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in continuations]
    return _Request([prefix], encoded, [len(text) for text in continuations])


def score_requests(
    model: PreTrainedModel,
    requests: list[_Request],
    *,
    batch_tokens: int = 4096,
    max_length: int | None = None,
    pad_id: int = 0,
) -> None:
    """Fill each request's `first_logp` and `loglik` (per continuation), reusing each prompt's KV cache."""
    import torch

    max_length = max_length or getattr(model.config, "max_position_embeddings", 4096) or 4096
    for request in requests:  # left-truncate prompts that do not fit with their longest continuation
        keep = max_length - max(len(c) for c in request.continuations)
        if keep < 1:
            raise LangadaptError(f"a choice is longer than the model's context ({max_length} tokens)")
        request.context = request.context[-keep:]
    device = next(model.parameters()).device
    parameters = inspect.signature(model.forward).parameters
    keeps_logits = "logits_to_keep" in parameters
    # transformers >= 5.2x names the KV-cache argument `cache` and warns on `past_key_values`; older 5.x only
    # knows `past_key_values`.
    cache_arg = "cache" if "cache" in parameters else "past_key_values"
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].context), reverse=True)
    most_rows = max(1, 2**24 // model.get_input_embeddings().num_embeddings)  # last-position logits ≤ 64 MiB
    at = 0
    with torch.inference_mode():
        while at < len(order):
            width = len(requests[order[at]].context)
            rows = order[at : at + max(1, min(batch_tokens // width, most_rows))]
            at += len(rows)
            _score_batch(model, [requests[i] for i in rows], width, batch_tokens, pad_id, device, keeps_logits,
                         cache_arg)


def _score_batch(model: PreTrainedModel, batch: list[_Request], width: int, batch_tokens: int, pad_id: int,
                 device: torch.device, keeps_logits: bool, cache_arg: str) -> None:
    import torch
    from transformers import DynamicCache

    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, request in enumerate(batch):  # left padding: every prompt ends at the last column
        input_ids[row, width - len(request.context):] = torch.tensor(request.context)
        mask[row, width - len(request.context):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if keeps_logits else {}
    out = model(input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                use_cache=True, **{cache_arg: DynamicCache()}, **extra)
    last = torch.log_softmax(out.logits[:, -1].float(), -1)
    filled = out["cache"] if "cache" in out else out["past_key_values"]
    layers = [(layer.keys, layer.values) for layer in filled.layers]
    del out

    # Rows of the continuation pass: every continuation longer than one token (one-token ones are done).
    pending: list[tuple[int, int]] = []
    for row, request in enumerate(batch):
        request.first_logp = [last[row, c[0]].item() for c in request.continuations]
        request.loglik = list(request.first_logp)
        pending += [(row, k) for k, c in enumerate(request.continuations) if len(c) > 1]
    pending.sort(key=lambda rk: len(batch[rk[0]].continuations[rk[1]]), reverse=True)
    at = 0
    while at < len(pending):
        steps = len(batch[pending[at][0]].continuations[pending[at][1]]) - 1
        # bound the cache copy (rows x prompt) and, as on CPU large logit tensors are slow, the logits (~64 MiB)
        rows = min(batch_tokens // (width + steps), 2**24 // (steps * last.shape[-1]))
        chunk = pending[at : at + max(1, rows)]
        at += len(chunk)
        owners = torch.tensor([row for row, _ in chunk])
        cont_ids = torch.full((len(chunk), steps), pad_id, dtype=torch.long)
        cont_mask = torch.zeros_like(cont_ids)
        for r, (row, k) in enumerate(chunk):
            tokens = batch[row].continuations[k][:-1]  # inputs; targets are continuations[k][1:]
            cont_ids[r, : len(tokens)] = torch.tensor(tokens)
            cont_mask[r, : len(tokens)] = 1
        cont_pos = positions[owners, -1:] + 1 + torch.arange(steps)
        cache = DynamicCache([(k[owners.to(k.device)], v[owners.to(v.device)]) for k, v in layers])
        logits = model(
            input_ids=cont_ids.to(device), attention_mask=torch.cat([mask[owners], cont_mask], -1).to(device),
            position_ids=cont_pos.to(device), use_cache=True, **{cache_arg: cache},
        ).logits
        logp = torch.log_softmax(logits.float(), -1)
        for r, (row, k) in enumerate(chunk):
            targets = torch.tensor(batch[row].continuations[k][1:], device=logp.device)
            batch[row].loglik[k] += logp[r, torch.arange(len(targets)), targets].sum().item()


@dataclass(frozen=True)
class McResult:
    """Accuracy per scoring, plus per-item scores for inspection and comparison."""

    task: str
    n: int
    accuracy: dict[str, float]
    items: list[dict[str, Any]]

    def to_dict(self, *, with_items: bool = True) -> dict[str, Any]:
        summary = {"task": self.task, "n": self.n, "accuracy": {k: round(v, 6) for k, v in self.accuracy.items()}}
        return {**summary, "items": self.items} if with_items else summary


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first of equal maxima, like np.argmax


def evaluate_mc(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[McItem],
    *,
    fmt: McFormat | None = None,
    shots: Sequence[McItem] = (),
    scorings: tuple[Scoring, ...] | list[Scoring] = SCORINGS,
    task: str = "mc",
    batch_tokens: int = 4096,
    max_length: int | None = None,
) -> McResult:
    """Score every item's choices; accuracy per requested scoring."""
    fmt = fmt or McFormat()
    unknown = set(scorings) - set(SCORINGS)
    if unknown:
        raise LangadaptError(f"unknown scoring(s) {sorted(unknown)} — choose from {', '.join(SCORINGS)}")
    requests, unconditional = [], []
    for item in items:
        prompt = fmt.prompt(item, list(shots), tokenizer)
        answers = fmt.answers(item)
        spaced = [" " + a for a in answers]
        context, continuations = encode_request(tokenizer, prompt, spaced, add_special_tokens=not fmt.chat_template)
        requests.append(_Request(context, continuations, [len(a) for a in answers]))
        if "mutual_info" in scorings:
            unconditional.append(encode_unconditional(tokenizer, spaced))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    score_requests(model, requests + unconditional, batch_tokens=batch_tokens, max_length=max_length, pad_id=pad)
    priors = [u.loglik for u in unconditional] or [[0.0] * len(r.loglik) for r in requests]

    results, correct = [], dict.fromkeys(scorings, 0)
    for item, request, prior in zip(items, requests, priors, strict=True):
        scores = {
            "loglik": request.loglik,
            "loglik_norm": [ll / n for ll, n in zip(request.loglik, request.lengths, strict=True)],
            "first_token": [math.exp(lp) for lp in request.first_logp],
            "mutual_info": [ll - p for ll, p in zip(request.loglik, prior, strict=True)],
        }
        record: dict[str, Any] = {"answer": item.answer}
        for scoring in scorings:
            prediction = _argmax(scores[scoring])
            correct[scoring] += prediction == item.answer
            record[scoring] = {"prediction": prediction, "correct": prediction == item.answer,
                               "scores": [round(s, 6) for s in scores[scoring]]}
        results.append(record)
    accuracy = {s: correct[s] / len(items) for s in scorings}
    return McResult(task, len(items), accuracy, results)


# --------------------------------------------------------------------------------------------------------
# The eval task: every `eval.mc.<name>` task file on every model.
# --------------------------------------------------------------------------------------------------------


class McTaskConfig(Section):
    """A local multiple-choice task: JSONL with question, choices, answer (0-based) and optional context."""

    path: InputPath
    fewshot_path: InputPath | None = None
    num_fewshot: int = Field(default=0, ge=0)
    language: str | None = Field(default=None, description="prompt language; default: target_language")
    answer_format: AnswerFormat = "letter"
    scoring: list[Scoring] = Field(default_factory=lambda: list(SCORINGS), min_length=1)
    template: str | None = Field(default=None, description="fields: {context} {question} {question_label} {options}")
    answer_prefix: str | None = None
    chat_template: bool | Literal["auto"] = "auto"
    max_items: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _fewshot_needs_file(self) -> McTaskConfig:
        if self.num_fewshot and self.fewshot_path is None:
            raise ValueError("num_fewshot > 0 needs fewshot_path (a file of examples in the task's format)")
        return self


McInputs = dict[str, tuple[list[McItem], list[McItem]]]  # task name -> (items, few-shot examples)


@eval_task
class McTask(EvalTask[dict[str, McTaskConfig], McInputs]):
    key = "mc"
    annotation = dict[str, McTaskConfig]
    default = Field(default_factory=dict)

    def input_files(self, setting: dict[str, McTaskConfig]) -> list[str]:
        return [str(p) for task in setting.values() for p in (task.path, task.fewshot_path) if p is not None]

    def preflight(self, setting: dict[str, McTaskConfig], cfg: RunConfig) -> None:
        if not input_files_checked():
            return
        for name, task in setting.items():
            read_mc_file(task.path, name)
            if task.fewshot_path:
                shots = read_mc_file(task.fewshot_path, f"{name} few-shot")
                if len(shots) < task.num_fewshot:
                    raise LangadaptError(f"eval.mc.{name}: num_fewshot is {task.num_fewshot} but "
                                         f"'{task.fewshot_path}' holds {len(shots)} examples — lower num_fewshot "
                                         "or add examples")

    def read_inputs(self, setting: dict[str, McTaskConfig], cfg: RunConfig, data_dir: Path) -> McInputs:
        inputs = {}
        for name, task in setting.items():
            items = read_mc_file(task.path, name)[: task.max_items]
            shots = read_mc_file(task.fewshot_path, f"{name} few-shot")[: task.num_fewshot] if task.fewshot_path else []
            inputs[name] = (items, shots)
        return inputs

    def run(self, setting: dict[str, McTaskConfig], inputs: McInputs, model: EvalModel) -> TaskOutput:
        out = TaskOutput({})
        for name, task in setting.items():
            items, shots = inputs[name]
            # a continuation item is plain text; "auto" never puts it in a chat template
            plain = task.answer_format == "continuation" and task.chat_template == "auto"
            chat = False if plain else model.chat(task.chat_template)
            fmt = McFormat(language=task.language or model.target_language, answer_format=task.answer_format,
                           answer_prefix=task.answer_prefix, chat_template=chat,
                           **({"template": task.template} if task.template else {}))
            result = evaluate_mc(model.model, model.tokenizer, items, fmt=fmt, shots=shots, scorings=task.scoring,
                                 task=name, batch_tokens=model.section.batch_tokens)
            out.report[name] = {**result.to_dict(), "chat_template": chat, "num_fewshot": len(shots)}
            for scoring, accuracy in result.accuracy.items():
                out.headline[f"mc:{name} {scoring}"] = round(accuracy, 4)
        return out

    def item_scores(self, setting: dict[str, McTaskConfig], report: dict[str, Any]) -> dict[str, ItemScores]:
        """Each scoring's accuracy as the rate of items it answers correctly."""
        return {f"mc:{name} {scoring}": ItemScores.successes([item[scoring]["correct"] for item in task["items"]])
                for name, task in report.items() for scoring in task["accuracy"]
                if all("correct" in item.get(scoring, {}) for item in task.get("items", []))}
