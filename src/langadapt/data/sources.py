"""Read documents from a configured source: jsonl / json.gz / txt / parquet / a `datasets` folder / a hub id.

Reading is streaming (one document at a time) so memory does not grow with the corpus. Lines that are
not valid UTF-8 or not valid JSON are skipped and counted, never fatal half-way through a corpus.
"""

from __future__ import annotations

import glob
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from langadapt.data.config import SourceConfig
from langadapt.errors import LangadaptError

_JSONL = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
_TXT = (".txt", ".txt.gz")
_PARQUET = (".parquet",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ReadStats:
    """What reading a source skipped, so stages can report it."""

    documents: int = 0
    invalid_utf8: int = 0
    invalid_json: int = 0
    missing_field: int = 0
    files: list[str] = field(default_factory=list)


def is_hub_source(source: SourceConfig) -> bool:
    """A hub dataset id (`org/name`) that is not a local path; read only when online."""
    if source.format == "hub":
        return True
    return source.format == "auto" and not Path(source.path).exists() and bool(_HUB_ID.match(source.path))


def source_files(source: SourceConfig, name: str = "source") -> list[Path]:
    """The files a source points at (a file, a folder of files, or a glob); an error if none."""
    pattern = source.path
    if any(ch in pattern for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    else:
        path = Path(pattern)
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "state.json").exists():
                return [path]  # a `datasets.save_to_disk` folder is read as one unit
            matches = sorted(p for p in path.rglob("*") if p.is_file() and _format_of(p, "auto") != "unknown")
        else:
            matches = [path] if path.exists() else []
    if not matches:
        raise LangadaptError(
            f"data source '{name}': no file matches '{pattern}' — check data.sources.{name}.path "
            "(relative paths are taken from the config file's folder)"
        )
    return matches


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.name.lower()
    if path.is_dir():
        return "arrow"
    if name.endswith(_JSONL):
        return "jsonl"
    if name.endswith(_TXT):
        return "txt"
    if name.endswith(_PARQUET):
        return "parquet"
    return "unknown"


def iter_documents(
    source: SourceConfig, name: str = "source", stats: ReadStats | None = None, limit: int | None = None
) -> Iterator[str]:
    """Yield the text of each document of a source, in file order (at most `limit`)."""
    stats = stats if stats is not None else ReadStats()
    for label, documents in _readers(source, name, stats):
        stats.files.append(label)
        for text in documents:
            stats.documents += 1  # counted before the yield: a paused reader has read what it yielded
            yield text
            if limit is not None and stats.documents >= limit:
                return


def _readers(source: SourceConfig, name: str, stats: ReadStats) -> Iterator[tuple[str, Iterator[str]]]:
    """(label, documents) of the hub dataset or of each file, opened one after the other."""
    if is_hub_source(source):
        yield f"hub:{source.path}", _iter_hub(source, name)
        return
    for path in source_files(source, name):
        fmt = _format_of(path, source.format)
        if fmt == "jsonl":
            yield str(path), _iter_jsonl(path, source.text_field, name, stats)
        elif fmt == "txt":
            yield str(path), _iter_txt(path, stats)
        elif fmt == "parquet":
            yield str(path), _iter_parquet(path, source.text_field, name)
        elif fmt == "arrow":
            yield str(path), _iter_arrow(path, source.text_field, name)
        else:
            raise LangadaptError(
                f"data source '{name}': cannot tell the format of '{path}' — name it *.jsonl[.gz], *.txt[.gz] "
                "or *.parquet, or set data.sources.<name>.format"
            )


def _open_text_lines(path: Path, stats: ReadStats) -> Iterator[str]:
    with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as raw:
        for line in raw:
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                stats.invalid_utf8 += 1


def _iter_jsonl(path: Path, text_field: str, name: str, stats: ReadStats) -> Iterator[str]:
    for line_number, line in enumerate(_open_text_lines(path, stats), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            stats.invalid_json += 1
            continue
        if not isinstance(record, dict) or text_field not in record:
            if stats.documents == 0 and isinstance(record, dict):
                fields = ", ".join(sorted(record)) or "none"
                raise LangadaptError(
                    f"data source '{name}': '{path.name}' line {line_number} has no field '{text_field}' "
                    f"(fields: {fields}) — set data.sources.{name}.text_field"
                )
            stats.missing_field += 1
            continue
        text = record[text_field]
        if isinstance(text, str):
            yield text


def _iter_txt(path: Path, stats: ReadStats) -> Iterator[str]:
    """One document per line, or per blank-line-separated paragraph block when the file has blank lines."""
    block: list[str] = []
    saw_blank = False
    for line in _open_text_lines(path, stats):
        line = line.rstrip("\r\n")
        if line.strip():
            block.append(line)
            continue
        saw_blank = True
        if block:
            yield "\n".join(block)
            block = []
    if block:
        if saw_blank:
            yield "\n".join(block)
        else:
            yield from block


def _iter_parquet(path: Path, text_field: str, name: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise LangadaptError(
            f"data source '{name}': '{path.name}' has no column '{text_field}' "
            f"(columns: {', '.join(parquet.schema_arrow.names)}) — set data.sources.{name}.text_field"
        )
    for batch in parquet.iter_batches(columns=[text_field], batch_size=4096):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str):
                yield text


def _iter_arrow(path: Path, text_field: str, name: str) -> Iterator[str]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise LangadaptError(f"data source '{name}': '{path}' is a DatasetDict — point at one split's folder")
    if text_field not in dataset.column_names:
        raise LangadaptError(
            f"data source '{name}': '{path.name}' has no column '{text_field}' "
            f"(columns: {', '.join(dataset.column_names)}) — set data.sources.{name}.text_field"
        )
    for row in dataset.select_columns([text_field]):
        text = row[text_field]
        if isinstance(text, str):
            yield text


def _iter_hub(source: SourceConfig, name: str) -> Iterator[str]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(source.path, source.subset, split=source.split, streaming=True)
        rows = iter(dataset)
        first = next(rows, None)
    except Exception as exc:  # the hub raises many types; all mean the same to the user
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise LangadaptError(
            f"data source '{name}': cannot stream hub dataset '{source.path}' (subset {source.subset}, split "
            f"{source.split}): {reason} — check the id, subset and split, and that you are online"
        ) from None
    if first is None:
        return
    if source.text_field not in first:
        raise LangadaptError(
            f"data source '{name}': hub dataset '{source.path}' has no field '{source.text_field}' "
            f"(fields: {', '.join(sorted(first))}) — set data.sources.{name}.text_field"
        )
    for row in chain([first], rows):
        text = row.get(source.text_field)
        if isinstance(text, str):
            yield text

