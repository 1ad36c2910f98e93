"""Building blocks shared by every config section: a strict base model and path/model-reference types.

Relative paths in a config file are resolved against the folder holding the config file, so a config
works from any working directory. Sections live next to the stage that reads them
(`langadapt/<stage>/config.py`); `langadapt.config.RunConfig` composes them into the one schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo


class Section(BaseModel):
    """Strict config model: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    value = Path(value).expanduser()
    return value if value.is_absolute() else (_base_dir(info) / value).resolve()


def _resolve_pattern(value: str, info: ValidationInfo) -> str:
    """A path that may contain glob characters (`data/*.jsonl.gz`) or be a hub dataset id (`org/name`)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = _base_dir(info) / path
    looks_local = any(ch in value for ch in "*?[") or candidate.parent.exists() or value.startswith(".")
    return str(candidate.resolve()) if looks_local else value


def _resolve_model_ref(value: str, info: ValidationInfo) -> str:
    """`builtin:NAME` and hub ids stay as they are; an existing relative folder becomes absolute."""
    if value.startswith("builtin:"):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    candidate = _base_dir(info) / path
    return str(candidate.resolve()) if candidate.exists() or value.startswith(".") else value


InputPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A file or folder path; relative paths are taken from the config file's folder."""

PathPattern = Annotated[str, AfterValidator(_resolve_pattern)]
"""A file, folder, glob pattern or hub dataset id."""

ModelRef = Annotated[str, AfterValidator(_resolve_model_ref)]
"""`builtin:smollm2-135m-instruct`, a local model folder, or a Hugging Face hub id."""
