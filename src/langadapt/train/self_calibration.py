"""Self-calibration (LEP §5): the original instruct model answers prompts greedily; the answers that pass
length, language and optional LLM-judge filters become SFT data, so calibration teaches the adapted model
the original's own behaviour. Generation is the expensive half, so answers are cached as they are made."""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.instruct import Conversation, load_prompts, write_conversations
from langadapt.drops import Drops
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.train.config import JudgeSettings, SftConfig

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
            rows += [{"index": i, "answer": g.text, "stopped": g.stopped} for i, g in zip(members, run.outputs, strict=True)]
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
        return {"kept": self.kept, "dropped": dict(self.dropped), "judge_scores": {str(k): v for k, v in sorted(self.scores.items())}}


def filter_answers(
    answers: list[SelfAnswer],
    *,
    min_chars: int = 1,
    max_chars: int | None = None,
    drop_unfinished: bool = True,
    language: str | None = None,
    min_language_confidence: float = 0.5,
    judge: Judge | None = None,
) -> tuple[list[SelfAnswer], list[int | None], FilterReport]:
    """Keep answers that pass every filter, cheapest first; returns them, their judge scores and the counts."""
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
        scores = judge.score_all([(_first_user(a.prompt), a.answer) for a in kept])
        passed = []
        for answer, score in zip(kept, scores, strict=True):
            if score is None:
                report.dropped.drop("judge_unparsed")
                continue
            report.scores[score] += 1
            if score < judge.threshold:
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


def language_name(code: str) -> str:
    """English name of an ISO 639 code ('eu' -> 'Basque'), or the code itself."""
    from langadapt.data.langid import lingua_language

    try:
        return lingua_language(code).name.title()
    except LangadaptError:
        return code


JUDGE_PROMPT = (
    "You are grading an assistant's answer, which must be written in {language}. Rate its grammar and its "
    "relevance to the question on a scale from 1 (unusable) to 5 (excellent). Reply with the number only.\n\n"
    "Question:\n{question}\n\nAnswer:\n{answer}"
)


class Judge:
    """An OpenAI-compatible chat-completions endpoint that scores (question, answer) pairs from 1 to 5.

    The API key is read from the environment variable the config names; it goes into the request header and
    nowhere else (no log line, error message or manifest holds it).
    """

    RETRIES = 3
    BACKOFF_SECONDS = 1.0

    def __init__(self, settings: JudgeSettings, language: str):
        self.url = settings.url.rstrip("/") + "/chat/completions"
        self.model = settings.model
        self.threshold = settings.threshold
        self.workers = settings.workers
        self.timeout = settings.timeout_seconds
        self.prompt = settings.prompt or JUDGE_PROMPT
        self.language = language_name(language)
        self._key_env = settings.api_key_env
        if not os.environ.get(self._key_env):
            raise LangadaptError(
                f"the judge needs an API key in the environment variable {self._key_env}, which is not set — "
                "export it before the run"
            )

    def score_all(self, pairs: list[tuple[str, str]]) -> list[int | None]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda pair: self.score(*pair), pairs))

    def score(self, question: str, answer: str) -> int | None:
        content = self.prompt.format(language=self.language, question=question, answer=answer)
        body = json.dumps({
            "model": self.model, "temperature": 0, "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
        }).encode("utf-8")
        reply = self._post(body)
        try:
            text = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None
        match = re.search(r"[1-5]", text or "")
        return int(match.group()) if match else None

    def _post(self, body: bytes) -> dict[str, Any]:
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {os.environ.get(self._key_env, '')}",
        })
        attempt = 0
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                retryable = exc.code == 429 or exc.code >= 500
                problem = f"HTTP {exc.code}" + (f" — check the key in {self._key_env}" if exc.code in (401, 403) else "")
            except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as exc:
                retryable, problem = True, type(exc).__name__
            if not retryable or attempt == self.RETRIES:
                raise LangadaptError(f"the judge at {self.url} failed: {problem}")
            time.sleep(self.BACKOFF_SECONDS * 2**attempt)
            attempt += 1



def self_calibration_data(
    settings: SftConfig, *, language: str, original_model: str, trust_remote_code: bool, out: Path, cache: Path
) -> tuple[list[Conversation], dict[str, Any]]:
    """The original model's greedy answers to the prompts, filtered, saved to `out` as a chat-format file."""
    from langadapt.models import load_model, load_tokenizer

    calibration = settings.self_calibration
    assert calibration is not None
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
