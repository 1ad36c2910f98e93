"""Instruction data: file formats, the copy task, and self-calibration data.

Every instruction source becomes a **conversation** (a list of `{"role", "content"}` messages, roles
`system` / `user` / `assistant`) or a **preference pair** (a prompt conversation plus a chosen and a rejected
answer). The training code never sees the file formats, which are recognised per file from its first row:

| format | fields |
|---|---|
| alpaca | `instruction`, `output`, optional `input`, `system` |
| chat | `messages` (or ShareGPT `conversations`) of `{role, content}` (or `{from, value}`) |
| qa | `question`, `answer` |
| preference | `chosen`, `rejected`, and `prompt` (plain strings, or chat message lists) |
| prompt | `prompt` only — prompts for self-calibration |

Rows that cannot train anything (an empty assistant turn, chosen == rejected, no assistant turn) are dropped
and counted, never fatal one by one; a file whose rows fit no format is an error naming the fields found.

Two generated sources implement LEP's calibration (arXiv 2412.21140 §5): the **copy task** (target-language
instructions to repeat a corpus sentence or paragraph verbatim, which pushes an adapted model to use its new
long tokens), and **self-calibration** (the original instruct model answers prompts greedily; the answers
that pass length, language and optional LLM-judge filters become SFT data).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain, groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.train.config import JudgeSettings

log = logging.getLogger("langadapt.data.instruct")

Message = dict[str, str]
Conversation = list[Message]

ROLES = {
    "system": "system",
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant",
}
ACCEPTED_FORMATS = (
    "alpaca (instruction, input?, output), chat (messages of role/content), Q/A (question, answer), "
    "preference (prompt, chosen, rejected)"
)


@dataclass(frozen=True)
class PreferencePair:
    prompt: Conversation  # ends with a user turn
    chosen: str
    rejected: str


@dataclass
class LoadReport:
    """What reading instruction files found: the format of each file, rows read, rows dropped and why."""

    formats: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"formats": self.formats, "rows": self.rows, "dropped": dict(self.dropped)}


# --------------------------------------------------------------------------------------------------------
# Reading files and recognising formats.
# --------------------------------------------------------------------------------------------------------


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a `.jsonl[.gz]` / `.json[.gz]` (JSON Lines or one JSON list) / `.parquet` file."""
    path = Path(path)
    if not path.is_file():
        raise LangadaptError(f"instruction file '{path}' does not exist — check the path in the config")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, row
        return
    if not name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")):
        raise LangadaptError(f"instruction file '{path}': unknown extension — use .jsonl, .json(.gz) or .parquet")
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        first = handle.readline()
        if first.lstrip().startswith("["):  # one JSON list
            rows = _parse_json(first + handle.read(), str(path))
            if not isinstance(rows, list):
                raise LangadaptError(f"instruction file '{path}' is not a list of records — write one JSON object per line")
            yield from enumerate(rows, start=1)
            return
        for number, line in enumerate(chain([first], handle), start=1):  # JSON Lines, streamed
            if line.strip():
                yield number, _parse_json(line, f"{path}:{number}")


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LangadaptError(f"{where}: invalid JSON ({exc.msg}) — fix the line or remove it") from None


def detect_format(record: Any, where: str) -> str:
    """The format of one record (see the module docstring); an error listing the fields found when none fits."""
    if not isinstance(record, dict):
        raise LangadaptError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    keys = set(record)
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if "messages" in keys or "conversations" in keys:
        return "chat"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"question", "answer"} <= keys:
        return "qa"
    if "prompt" in keys:
        return "prompt"
    fields = ", ".join(sorted(keys)) or "none"
    raise LangadaptError(f"{where}: no known instruction format (fields: {fields}) — accepted: {ACCEPTED_FORMATS}")


def to_conversation(record: dict[str, Any], fmt: str, where: str) -> Conversation:
    """An alpaca / qa / chat record as a conversation."""
    if fmt == "alpaca":
        instruction = _text(record, "instruction", where)
        extra = record.get("input")
        user = f"{instruction}\n\n{_text(record, 'input', where)}" if extra else instruction
        system = [{"role": "system", "content": _text(record, "system", where)}] if record.get("system") else []
        return [*system, {"role": "user", "content": user}, {"role": "assistant", "content": _text(record, "output", where)}]
    if fmt == "qa":
        return [{"role": "user", "content": _text(record, "question", where)},
                {"role": "assistant", "content": _text(record, "answer", where)}]
    if fmt == "chat":
        return to_messages(record.get("messages", record.get("conversations")), where)
    raise LangadaptError(f"{where}: a {fmt} record holds no single conversation — {_purpose_hint(fmt)}")


def _purpose_hint(fmt: str) -> str:
    if fmt == "preference":
        return "preference files belong under dpo.data"
    return "prompt-only files belong under sft.self_calibration.prompts"


def to_messages(value: Any, where: str) -> Conversation:
    """Chat messages (`role`/`content`, or ShareGPT `from`/`value`) with roles mapped to system/user/assistant."""
    if not isinstance(value, list) or not value:
        raise LangadaptError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    messages = []
    for message in value:
        if not isinstance(message, dict):
            raise LangadaptError(f"{where}: a message must be an object with role and content, got {message!r:.60}")
        role = message.get("role", message.get("from"))
        content = message.get("content", message.get("value"))
        if role not in ROLES:
            raise LangadaptError(
                f"{where}: unknown role {role!r} — use one of system, user, assistant (or human/gpt, bot)"
            )
        if not isinstance(content, str):
            raise LangadaptError(f"{where}: message content must be a string, got {type(content).__name__}")
        messages.append({"role": ROLES[role], "content": content})
    return messages


def to_preference(record: dict[str, Any], where: str) -> PreferencePair:
    """A preference record as (prompt conversation, chosen answer, rejected answer).

    `chosen`/`rejected` are answer strings, or message lists that may repeat the prompt (UltraFeedback style):
    the shared leading messages are the prompt, each side's last message is its answer.
    """
    chosen, rejected, prompt = record["chosen"], record["rejected"], record.get("prompt")
    if isinstance(chosen, list) and isinstance(rejected, list):
        chosen_msgs, rejected_msgs = to_messages(chosen, where), to_messages(rejected, where)
        shared = 0
        while shared < min(len(chosen_msgs), len(rejected_msgs)) - 1 and chosen_msgs[shared] == rejected_msgs[shared]:
            shared += 1
        if shared == 0 and prompt is None:
            raise LangadaptError(f"{where}: chosen and rejected share no prompt messages and there is no prompt field")
        # The shared messages already hold the prompt when the sides repeat it; else the prompt field is it.
        prefix = chosen_msgs[:shared] or _prompt_messages(prompt, where)
        for side in (chosen_msgs[shared:], rejected_msgs[shared:]):
            if len(side) != 1 or side[0]["role"] != "assistant":
                raise LangadaptError(
                    f"{where}: chosen and rejected must each end in one assistant message after their shared prompt"
                )
        chosen, rejected, prompt_conv = chosen_msgs[-1]["content"], rejected_msgs[-1]["content"], prefix
    elif isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:
            raise LangadaptError(f"{where}: plain-text chosen/rejected need a prompt field")
        prompt_conv = _prompt_messages(prompt, where)
    else:
        raise LangadaptError(f"{where}: chosen and rejected must both be strings or both be message lists")
    if not prompt_conv or prompt_conv[-1]["role"] != "user":
        raise LangadaptError(f"{where}: the prompt must end with a user turn")
    return PreferencePair(prompt_conv, chosen, rejected)


def _prompt_messages(prompt: Any, where: str) -> Conversation:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return to_messages(prompt, where)


def to_prompt(record: dict[str, Any], fmt: str, where: str) -> Conversation:
    """The prompt part of any record: its messages up to the last user turn."""
    if fmt == "prompt":
        return _prompt_messages(record["prompt"], where)
    if fmt == "preference":
        return to_preference(record, where).prompt
    messages = to_conversation(record, fmt, where)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise LangadaptError(f"{where}: no user turn to use as a prompt")
    return messages[: last_user + 1]


def _text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise LangadaptError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return value


def _file_rows(paths: Iterable[Path], report: LoadReport) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(format, where, record) of every row; a file's rows must all have the format of its first row."""
    for path in paths:
        fmt = None
        for number, record in read_records(Path(path)):
            where = f"{Path(path).name}:{number}"
            found = detect_format(record, where)
            if fmt is None:
                fmt = report.formats[str(path)] = found
            elif found != fmt:
                raise LangadaptError(f"{where}: a {found} row in a {fmt} file — keep one format per file")
            report.rows += 1
            yield fmt, where, record
        if fmt is None:
            raise LangadaptError(f"instruction file '{path}' holds no rows")


def load_conversations(paths: Iterable[Path]) -> tuple[list[Conversation], LoadReport]:
    """Every conversation of instruction files; rows with an empty or missing assistant turn are dropped."""
    report = LoadReport()
    conversations = []
    for fmt, where, record in _file_rows(paths, report):
        if fmt in ("preference", "prompt"):
            raise LangadaptError(f"{where}: this is a {fmt} file — {_purpose_hint(fmt)}")
        conversation = to_conversation(record, fmt, where)
        problem = conversation_problem(conversation)
        if problem:
            report.dropped[problem] += 1
            continue
        conversations.append(conversation)
    _warn_dropped(report, "instruction")
    return conversations, report


def conversation_problem(conversation: Conversation) -> str | None:
    """Why a conversation cannot train anything (a drop reason), or None."""
    answers = [m for m in conversation if m["role"] == "assistant"]
    if not answers:
        return "no_answer"
    if next(m["role"] for m in conversation if m["role"] != "system") != "user":
        return "answer_before_question"
    if any(not m["content"].strip() for m in answers):
        return "empty_answer"
    return None


def load_preferences(paths: Iterable[Path]) -> tuple[list[PreferencePair], LoadReport]:
    """Every preference pair of preference files; empty answers and chosen == rejected are dropped."""
    report = LoadReport()
    pairs = []
    for fmt, where, record in _file_rows(paths, report):
        if fmt != "preference":
            raise LangadaptError(
                f"{where}: a {fmt} row where preference pairs are expected — DPO needs prompt, chosen, rejected"
            )
        pair = to_preference(record, where)
        if not pair.chosen.strip() or not pair.rejected.strip():
            report.dropped["empty_answer"] += 1
        elif pair.chosen.strip() == pair.rejected.strip():
            report.dropped["chosen_equals_rejected"] += 1
        else:
            pairs.append(pair)
    _warn_dropped(report, "preference")
    return pairs, report


def load_prompts(paths: Iterable[Path]) -> list[Conversation]:
    """The prompts of files in any format (see `to_prompt`)."""
    report = LoadReport()
    return [to_prompt(record, fmt, where) for fmt, where, record in _file_rows(paths, report)]


def _warn_dropped(report: LoadReport, what: str) -> None:
    for reason, count in sorted(report.dropped.items()):
        log.warning("dropped %d of %d %s rows: %s", count, report.rows, what, reason.replace("_", " "))


def write_conversations(path: Path, conversations: Iterable[Conversation], extra: Iterable[dict] | None = None) -> int:
    """Save conversations as a chat-format JSON Lines file (readable by `load_conversations`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    extras = iter(extra) if extra is not None else None
    with path.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            row = {"messages": conversation, **(next(extras) if extras else {})}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


# --------------------------------------------------------------------------------------------------------
# The copy task.
# --------------------------------------------------------------------------------------------------------

# Several phrasings per language, so the model learns the task rather than one sentence ({text} is the text).
COPY_TASK_INSTRUCTIONS: dict[str, list[str]] = {
    "en": [
        "Copy the following text exactly, without changing anything:\n\n{text}",
        "Repeat this text word for word:\n\n{text}",
        "Rewrite the text below exactly as it is:\n\n{text}",
    ],
    "eu": [
        "Kopiatu hurrengo testua zehazki, ezer aldatu gabe:\n\n{text}",
        "Errepikatu testu hau hitzez hitz:\n\n{text}",
        "Idatzi berriro beheko testua, dagoen bezala:\n\n{text}",
    ],
    "ru": [
        "Скопируйте следующий текст дословно, ничего не меняя:\n\n{text}",
        "Повторите этот текст слово в слово:\n\n{text}",
        "Перепишите текст ниже точно так, как он есть:\n\n{text}",
    ],
    "lt": [
        "Tiksliai nukopijuokite šį tekstą nieko nekeisdami:\n\n{text}",
        "Pakartokite šį tekstą žodis žodin:\n\n{text}",
        "Perrašykite žemiau esantį tekstą lygiai taip, kaip jis parašytas:\n\n{text}",
    ],
}

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of a paragraph: split after . ! ? … followed by white space."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def copy_task_conversations(
    texts: Iterable[str],
    *,
    count: int,
    sentence_share: float,
    language: str,
    seed: int,
    min_chars: int = 20,
    max_sentence_chars: int = 300,
    max_paragraph_chars: int = 2000,
    instructions: list[str] | None = None,
) -> tuple[list[Conversation], dict[str, int]]:
    """Copy-task conversations: a random instruction with a corpus sentence or paragraph, answered by that text.

    Sentences and paragraphs (whole documents) are drawn uniformly from the stream with reservoir sampling, so a
    large corpus is read once in constant memory; duplicates are skipped. Returns fewer examples than asked when
    the corpus has too few texts in the length limits (the counts say so).
    """
    templates = instructions or COPY_TASK_INSTRUCTIONS.get(language)
    if not templates:
        raise LangadaptError(
            f"no built-in copy-task instructions for language '{language}' — set sft.copy_task.instructions "
            "(templates with {text})"
        )
    rng = random.Random(seed)
    want_sentences = round(count * sentence_share)
    sentences = _Reservoir(want_sentences, rng)
    paragraphs = _Reservoir(count - want_sentences, rng)
    for text in texts:
        text = text.strip()
        text_sentences = split_sentences(text)
        if min_chars <= len(text) <= max_paragraph_chars and len(text_sentences) > 1:
            paragraphs.offer(text)
        for sentence in text_sentences:
            if min_chars <= len(sentence) <= max_sentence_chars:
                sentences.offer(sentence)
    chosen = [*sentences.items, *paragraphs.items]
    rng.shuffle(chosen)
    conversations = [
        [{"role": "user", "content": rng.choice(templates).format(text=text)}, {"role": "assistant", "content": text}]
        for text in chosen
    ]
    stats = {"sentences": len(sentences.items), "paragraphs": len(paragraphs.items), "requested": count}
    if len(conversations) < count:
        log.warning("copy task: the corpus yielded %d of the %d examples asked for", len(conversations), count)
    return conversations, stats


class _Reservoir:
    """Uniform sample of `size` distinct items from a stream (Algorithm R)."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng = size, rng
        self.items: list[str] = []
        self._members: set[str] = set()
        self._seen = 0

    def offer(self, item: str) -> None:
        if self.size == 0 or item in self._members:
            return
        self._seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
            self._members.add(item)
            return
        slot = self.rng.randrange(self._seen)
        if slot < self.size:
            self._members.discard(self.items[slot])
            self.items[slot] = item
            self._members.add(item)


# --------------------------------------------------------------------------------------------------------
# Self-calibration: the original instruct model's own answers, filtered.
# --------------------------------------------------------------------------------------------------------


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
    dropped: Counter[str] = field(default_factory=Counter)
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
            report.dropped["unfinished"] += 1
        elif len(text) < max(min_chars, 1):
            report.dropped["too_short"] += 1
        elif max_chars is not None and len(text) > max_chars:
            report.dropped["too_long"] += 1
        elif language is not None and language_confidence(text, language) < min_language_confidence:
            report.dropped["wrong_language"] += 1
        else:
            kept.append(answer)
    scores: list[int | None] = [None] * len(kept)
    if judge is not None and kept:
        scores = judge.score_all([(_first_user(a.prompt), a.answer) for a in kept])
        passed = []
        for answer, score in zip(kept, scores, strict=True):
            if score is None:
                report.dropped["judge_unparsed"] += 1
                continue
            report.scores[score] += 1
            if score < judge.threshold:
                report.dropped["judge_below_threshold"] += 1
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
