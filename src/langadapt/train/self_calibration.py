"""Self-calibration (LEP §5): the original instruct model answers prompts greedily; the answers that pass
length, language and optional LLM-judge filters become SFT data, so calibration teaches the adapted model
the original's own behaviour. Generation is the expensive half, so answers are cached as they are made."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.instruct import Conversation, load_prompts, write_conversations
from langadapt.drops import Drops
from langadapt.errors import LangadaptError
from langadapt.judge import Judge

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.train.config import SelfCalibrationConfig

log = logging.getLogger("langadapt.train.self_calibration")

@dataclass(frozen=True)
class SelfAnswer:
    prompt: Conversation
    answer: str
    stopped: bool  # ended with an end-of-turn token (False: cut by max_new_tokens)


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[Conversation],
    *,
    max_new_tokens: int,
    batch_size: int,
    cache: Path | None = None,
) -> list[SelfAnswer]:
    """Greedy answers of `model` to the first user turn of each prompt (with its system prompt, if any).

    Answers are appended to `cache` as they are made, and a re-run with the same cache picks up where the last
    one stopped — generation is the expensive half of self-calibration.
    """
    from langadapt.evaluate.generation import generate_greedy

    done = _read_cache(cache)
    todo = [i for i in range(len(prompts)) if i not in done]
    chunk = batch_size * 4
    for start in range(0, len(todo), chunk):
        indices = todo[start : start + chunk]
        rows = []
        # generate_greedy takes one system prompt per call: group the prompts by theirs.
        keyed = sorted(indices, key=lambda i: _system_of(prompts[i]) or "")
        for system, group in groupby(keyed, key=lambda i: _system_of(prompts[i]) or ""):
            members = list(group)
            run = generate_greedy(
                model, tokenizer, [_first_user(prompts[i]) for i in members], max_new_tokens=max_new_tokens,
                chat_template=True, system=system or None, batch_size=batch_size,
            )
            rows += [
                {"index": i, "answer": g.text, "stopped": g.stopped} for i, g in zip(members, run.outputs, strict=True)
            ]
        for row in rows:
            done[row["index"]] = row
        if cache is not None:
            with cache.open("a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        log.info("self-calibration: %d/%d prompts answered", len(done), len(prompts))
    return [
        SelfAnswer(_single_turn(prompts[i]), done[i]["answer"], done[i]["stopped"]) for i in range(len(prompts))
    ]


def _read_cache(cache: Path | None) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    if cache is None or not cache.exists():
        return done
    for line in cache.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # the last line of a killed run
            continue
        done[int(row["index"])] = row
    return done


def _system_of(prompt: Conversation) -> str | None:
    return prompt[0]["content"] if prompt and prompt[0]["role"] == "system" else None


def _first_user(prompt: Conversation) -> str:
    return next(m["content"] for m in prompt if m["role"] == "user")


def _single_turn(prompt: Conversation) -> Conversation:
    system = _system_of(prompt)
    head = [{"role": "system", "content": system}] if system is not None else []
    return [*head, {"role": "user", "content": _first_user(prompt)}]


@dataclass
class FilterReport:
    kept: int = 0
    dropped: Drops = field(default_factory=Drops)
    scores: Counter[int] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "judge_scores": {str(k): v for k, v in sorted(self.scores.items())},
        }


def filter_answers(
    answers: list[SelfAnswer],
    *,
    min_chars: int = 1,
    max_chars: int | None = None,
    drop_unfinished: bool = True,
    language: str | None = None,
    min_language_confidence: float = 0.5,
    judge: Judge | None = None,
    threshold: int = 4,
) -> tuple[list[SelfAnswer], list[int | None], FilterReport]:
    """Keep answers that pass every filter, cheapest first (the judge last, keeping grades ≥ `threshold`);
    returns them, their judge grades and the counts."""
    report = FilterReport()
    kept = []
    for answer in answers:
        text = answer.answer.strip()
        if drop_unfinished and not answer.stopped:
            report.dropped.drop("unfinished")
        elif len(text) < max(min_chars, 1):
            report.dropped.drop("too_short")
        elif max_chars is not None and len(text) > max_chars:
            report.dropped.drop("too_long")
        elif language is not None and language_confidence(text, language) < min_language_confidence:
            report.dropped.drop("wrong_language")
        else:
            kept.append(answer)
    scores: list[int | None] = [None] * len(kept)
    if judge is not None and kept:
        scores = judge.grade_all([(_first_user(a.prompt), a.answer) for a in kept])
        passed = []
        for answer, score in zip(kept, scores, strict=True):
            if score is None:
                report.dropped.drop("judge_unparsed")
                continue
            report.scores[score] += 1
            if score < threshold:
                report.dropped.drop("judge_below_threshold")
            else:
                passed.append((answer, score))
        kept = [a for a, _ in passed]
        scores = [s for _, s in passed]
    report.kept = len(kept)
    return kept, scores, report


def language_confidence(text: str, language: str) -> float:
    """lingua's confidence (0-1, among all languages it knows) that `text` is in ISO 639 `language`."""
    from langadapt.data.langid import all_languages_detector, lingua_language

    try:
        target = lingua_language(language)
    except LangadaptError:
        raise LangadaptError(
            f"the language filter does not know language '{language}' — set self_calibration.language_filter: false"
        ) from None
    return float(all_languages_detector().compute_language_confidence(text, target))


def self_calibration_data(
    calibration: SelfCalibrationConfig, *, language: str, original_model: str, trust_remote_code: bool, out: Path,
    cache: Path,
) -> tuple[list[Conversation], dict[str, Any]]:
    """The original model's greedy answers to the prompts, filtered, saved to `out` as a chat-format file."""
    from langadapt.models import load_model, load_tokenizer

    judge = Judge(calibration.judge, language) if calibration.judge is not None else None  # fails early on no key
    prompts = load_prompts(calibration.prompts)[: calibration.count]
    log.info("self-calibration: %s answers %d prompts", original_model, len(prompts))
    model = load_model(original_model, dtype=generation_dtype(), trust_remote_code=trust_remote_code)
    model = model.to(generation_device()).eval()
    tokenizer = load_tokenizer(original_model, trust_remote_code=trust_remote_code)
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=calibration.max_new_tokens,
                               batch_size=calibration.batch_size, cache=cache)
    del model
    kept, scores, report = filter_answers(
        answers, min_chars=calibration.min_chars, max_chars=calibration.max_chars,
        drop_unfinished=calibration.drop_unfinished, language=language if calibration.language_filter else None,
        min_language_confidence=calibration.min_language_confidence, judge=judge,
        threshold=calibration.judge.threshold if calibration.judge is not None else 4,
    )
    report.dropped.warn(log, len(answers), "self-calibration answers")
    conversations = [[*a.prompt, {"role": "assistant", "content": a.answer}] for a in kept]
    write_conversations(out, conversations, ({"judge_score": s} if s is not None else {} for s in scores))
    return conversations, {"prompts": len(prompts), **report.to_dict(), "examples": len(conversations)}


def generation_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def generation_dtype() -> str:
    """bf16 where the GPU has it (half the memory, same greedy answers in practice), fp32 elsewhere."""
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
