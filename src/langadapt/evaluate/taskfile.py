"""Reading an evaluation task file (JSON Lines) so that every problem names its task, file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError


def read_task_records(path: str | Path, label: str, what: str) -> list[tuple[str, Any]]:
    """(where, record) for each non-blank line of `path`; `where` ("mc task 'x': x.jsonl line 3") starts the
    caller's messages about that record. `label` names the task ("mc task 'x'"), `what` its records."""
    path = Path(path)
    if not path.is_file():
        raise LangadaptError(f"{label}: file '{path}' does not exist — check the path")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{label}: {path.name} line {number}"
            try:
                records.append((where, json.loads(line)))
            except json.JSONDecodeError:
                raise LangadaptError(f"{where} is not valid JSON — one JSON object per line") from None
    if not records:
        raise LangadaptError(f"{label}: '{path}' holds no {what}")
    return records
