"""Instruction data file formats: every instruction source becomes conversations or preference pairs.

A **conversation** is a list of `{"role", "content"}` messages (roles `system` / `user` / `assistant`); a
**preference pair** is a prompt conversation plus a chosen and a rejected answer. The training code never
sees the file formats, which are recognised per file from its first row: alpaca (`instruction`, `output`,
optional `input`, `system`), chat (`messages` or ShareGPT `conversations`), qa (`question`, `answer`),
preference (`chosen`, `rejected`, `prompt`) and prompt (`prompt` only, for self-calibration). Rows that
cannot train anything are dropped and counted, never fatal one by one; a file whose rows fit no format is
an error naming the fields found. (The generated SFT sources — copy task, self-calibration — live in train/.)
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from langadapt.drops import Drops
from langadapt.errors import LangadaptError

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
    dropped: Drops = field(default_factory=Drops)

    def to_dict(self) -> dict[str, Any]:
        return {"formats": self.formats, "rows": self.rows, "dropped": self.dropped.to_dict()}



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
                raise LangadaptError(
                    f"instruction file '{path}' is not a list of records — write one JSON object per line"
                )
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
        return [
            *system,
            {"role": "user", "content": user},
            {"role": "assistant", "content": _text(record, "output", where)},
        ]
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
            report.dropped.drop(problem)
            continue
        conversations.append(conversation)
    report.dropped.warn(log, report.rows, "instruction rows")
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
            report.dropped.drop("empty_answer")
        elif pair.chosen.strip() == pair.rejected.strip():
            report.dropped.drop("chosen_equals_rejected")
        else:
            pairs.append(pair)
    report.dropped.warn(log, report.rows, "preference rows")
    return pairs, report


def load_prompts(paths: Iterable[Path]) -> list[Conversation]:
    """The prompts of files in any format (see `to_prompt`)."""
    report = LoadReport()
    return [to_prompt(record, fmt, where) for fmt, where, record in _file_rows(paths, report)]


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
