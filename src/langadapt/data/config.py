"""The `data:` config section: where the corpus comes from and which texts are held out for evaluation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from langadapt.schema import PathPattern, Section


class SourceConfig(Section):
    """One named text source (a file, a glob, a folder, or a hub dataset id)."""

    path: PathPattern
    text_field: str = "text"
    language: str | None = Field(default=None, description="ISO 639-1 code of the text, e.g. 'eu' or 'en'")
    format: Literal["auto", "jsonl", "txt", "parquet", "arrow"] = "auto"
    max_documents: int | None = Field(default=None, ge=1, description="read at most this many documents")


class DataConfig(Section):
    """`sources` feed training; `eval_sources` are held-out texts every later stage measures on."""

    sources: dict[str, SourceConfig] = Field(min_length=1)
    eval_sources: dict[str, SourceConfig] = Field(default_factory=dict)
