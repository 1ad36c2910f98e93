"""Which texts of a row are translated, per instruction format, and how they are put back.

A row keeps its own structure (alpaca stays alpaca, ShareGPT `from`/`value` stays so): only the text fields
are replaced, so the translated file reads exactly like its source (`langadapt.data.instruct`).

| format | translated |
|---|---|
| alpaca | instruction, input, output (+ system unless `system_prompts: keep`) |
| qa | question, answer |
| chat | every turn's content (system turns unless kept) |
| preference | prompt, chosen, rejected (strings or message lists; a prompt repeated in both sides is one text) |
| prompt | prompt |

A row that lacks a field its format needs raises `RowProblem("missing_field")`: dropped and counted.
"""

from __future__ import annotations

import copy
from typing import Any

from langadapt.data.instruct import detect_format, to_messages, to_preference
from langadapt.errors import LangadaptError

FieldPath = tuple[str | int, ...]


class RowProblem(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def row_format(record: Any, where: str, file_format: str | None) -> str:
    """The row's format; a row unlike its file's first row (fields missing) is a RowProblem."""
    try:
        found = detect_format(record, where)
    except LangadaptError:
        raise RowProblem("missing_field") from None
    if file_format is not None and found != file_format:
        raise RowProblem("missing_field")
    return found


def text_fields(record: dict[str, Any], fmt: str, where: str, *, keep_system: bool) -> list[tuple[FieldPath, str]]:
    """(path, text) of every non-empty text of the row to translate."""
    try:
        fields = list(_fields(record, fmt, where, keep_system))
    except LangadaptError:
        raise RowProblem("missing_field") from None
    return [(path, text) for path, text in fields if text.strip()]


def _fields(record: dict[str, Any], fmt: str, where: str, keep_system: bool) -> list[tuple[FieldPath, str]]:
    if fmt == "alpaca":
        names = ("instruction", "input", "output") if keep_system else ("system", "instruction", "input", "output")
        return [((name,), _string(record, name, optional=name in ("input", "system"))) for name in names]
    if fmt == "qa":
        return [(("question",), _string(record, "question")), (("answer",), _string(record, "answer"))]
    if fmt == "chat":
        key = "messages" if "messages" in record else "conversations"
        return _message_fields(record[key], (key,), where, keep_system)
    if fmt == "preference":
        to_preference(record, where)  # raises on a malformed pair
        fields: list[tuple[FieldPath, str]] = []
        for name in ("prompt", "chosen", "rejected"):
            value = record.get(name)
            if isinstance(value, str):
                fields.append(((name,), value))
            elif isinstance(value, list):
                fields += _message_fields(value, (name,), where, keep_system)
        return fields
    if fmt == "prompt":
        value = record["prompt"]
        return (
            [(("prompt",), value)]
            if isinstance(value, str)
            else _message_fields(value, ("prompt",), where, keep_system)
        )
    raise RowProblem("missing_field")


def _string(record: dict[str, Any], name: str, optional: bool = False) -> str:
    value = record.get(name)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise RowProblem("missing_field")
    return value


def _message_fields(messages: Any, prefix: FieldPath, where: str, keep_system: bool) -> list[tuple[FieldPath, str]]:
    roles = [m["role"] for m in to_messages(messages, where)]  # validates roles and contents
    fields = []
    for index, (message, role) in enumerate(zip(messages, roles, strict=True)):
        if role == "system" and keep_system:
            continue
        key = "content" if "content" in message else "value"
        fields.append(((*prefix, index, key), message[key]))
    return fields


def with_texts(record: dict[str, Any], texts: dict[FieldPath, str]) -> dict[str, Any]:
    """A copy of `record` with the texts at the given paths replaced."""
    out = copy.deepcopy(record)
    for path, text in texts.items():
        target: Any = out
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = text
    return out
