"""Read documents from a configured source: jsonl / json.gz / txt / parquet / a `datasets` folder / a hub id.

Reading is streaming (one document at a time) so memory does not grow with the corpus, and any `Part`
of a file — a byte range of a JSON Lines or line-per-document text file, a range of rows of a Parquet file
or `datasets` folder — can be read on its own, which is how the data stage shards a corpus. Documents
that are not valid UTF-8, not valid JSON or lack the text field are skipped and counted, never fatal
half-way through a corpus.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import IO

import orjson

from langadapt.data.config import SourceConfig
from langadapt.data.corpus import open_gzip
from langadapt.errors import LangadaptError

_JSONL = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
_TXT = (".txt", ".txt.gz")
_PARQUET = (".parquet",)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


PARAGRAPH_PROBE = 1 << 20  # a .txt file with a blank line in its first MiB holds one document per paragraph
_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r\f\v]*\n")


@dataclass
class ReadStats:
    """What reading a source skipped (documents, not lines: a paragraph with a bad line is one), for reports."""

    documents: int = 0
    invalid_utf8: int = 0
    invalid_json: int = 0
    missing_field: int = 0
    files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Part:
    """A piece of one file: documents starting at byte (jsonl, txt) or row (parquet, arrow) `start` up to
    `end` (None: the end of the file). `first` marks the source's first part, where a missing text field is
    an error rather than a skipped record."""

    path: str
    fmt: str
    start: int = 0
    end: int | None = None
    first: bool = True


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


def source_parts(source: SourceConfig, name: str) -> list[Part]:
    """The whole of every file of a local source, one part per file."""
    parts = []
    for i, path in enumerate(source_files(source, name)):
        fmt = _format_of(path, source.format)
        if fmt == "unknown":
            raise LangadaptError(
                f"data source '{name}': cannot tell the format of '{path}' — name it *.jsonl[.gz], *.txt[.gz] "
                "or *.parquet, or set data.sources.<name>.format"
            )
        parts.append(Part(str(path), fmt, first=i == 0))
    return parts


def read_part(part: Part, source: SourceConfig, name: str, stats: ReadStats) -> Iterator[str]:
    """The documents of one part of a file (see `Part`)."""
    path = Path(part.path)
    if part.fmt == "jsonl":
        return _iter_jsonl(path, source.text_field, name, stats, part)
    if part.fmt == "txt":
        return _iter_txt(path, stats, part)
    if part.fmt == "parquet":
        return _iter_parquet(path, source.text_field, name, part)
    return _iter_arrow(path, source.text_field, name, part)


def _readers(source: SourceConfig, name: str, stats: ReadStats) -> Iterator[tuple[str, Iterator[str]]]:
    """(label, documents) of the hub dataset or of each file, opened one after the other."""
    if is_hub_source(source):
        yield f"hub:{source.path}", iter_hub(source, name)
        return
    for part in source_parts(source, name):
        yield part.path, read_part(part, source, name, stats)


def open_binary(path: Path) -> IO[bytes]:
    return open_gzip(path) if path.name.endswith(".gz") else path.open("rb")


@dataclass
class _Parked:
    """A .gz reader stopped where a part ended: `line` (starting at byte `start`) is the next unread line,
    and no line starts in [`end`, `start`). `stamp` is the file's when it was opened: a file replaced or
    rewritten since is read afresh, not from the old reader."""

    raw: IO[bytes]
    end: int
    start: int
    line: bytes
    stamp: tuple[int, int, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


_PARKED: dict[str, _Parked] = {}  # by path; this process's own (a forked child starts with none)
_MAX_PARKED = 8
os.register_at_fork(after_in_child=_PARKED.clear)


def _lines(path: Path, part: Part) -> Iterator[bytes]:
    """The raw lines that start in [part.start, part.end) of the (decompressed) file.

    A compressed file cannot seek without decompressing everything before the offset. So a piece of a .gz
    file that ends before the file does leaves its reader parked at the next line. A later piece of that
    file in the same process then goes on from there instead of starting over: a worker decompresses each
    file about once, not once per piece (quadratic in the file's size)."""
    parked = _PARKED.pop(part.path, None)
    stamp = _stamp(path) if part.path.endswith(".gz") else None
    if parked is not None and parked.end <= part.start and parked.stamp == stamp:
        raw, position, lines = parked.raw, parked.start, chain([parked.line], parked.raw)
    else:
        if parked is not None:
            parked.raw.close()
        raw, position = open_binary(path), part.start
        if part.start > 0:
            raw.seek(part.start - 1)  # gzip: decompresses up to there
            position += len(raw.readline()) - 1  # the rest of the line holding byte start-1 belongs before us
        lines = iter(raw)
    kept_open = False
    try:
        for line in lines:
            if position < part.start:  # a parked reader behind this part: lines starting before it go
                position += len(line)
                continue
            if part.end is not None and position >= part.end:
                kept_open = stamp is not None
                if stamp is not None:
                    _park(part.path, _Parked(raw, part.end, position, line, stamp))
                return
            position += len(line)
            yield line
    finally:
        if not kept_open:
            raw.close()


def _park(path: str, parked: _Parked) -> None:
    while len(_PARKED) >= _MAX_PARKED:
        _PARKED.pop(next(iter(_PARKED))).raw.close()  # the oldest
    _PARKED[path] = parked


def close_parked_readers() -> None:
    """Close the readers `_lines` left parked, so that the next piece read starts from a fresh reader."""
    while _PARKED:
        _PARKED.popitem()[1].raw.close()


def _decoded(path: Path, part: Part) -> Iterator[str | None]:
    """Lines as text; None for a line that is not valid UTF-8."""
    for line in _lines(path, part):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            yield None


def _iter_jsonl(path: Path, text_field: str, name: str, stats: ReadStats, part: Part) -> Iterator[str]:
    checked = not part.first
    for line_number, line in enumerate(_decoded(path, part), start=1):
        if line is None:
            stats.invalid_utf8 += 1
            continue
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:  # also a lone surrogate escape (\ud800): no UTF-8 text
            stats.invalid_json += 1
            continue
        if not isinstance(record, dict) or text_field not in record:
            if not checked and isinstance(record, dict):
                fields = ", ".join(sorted(record)) or "none"
                raise LangadaptError(
                    f"data source '{name}': '{path.name}' line {line_number} has no field '{text_field}' "
                    f"(fields: {fields}) — set data.sources.{name}.text_field"
                )
            stats.missing_field += 1
            continue
        checked = True
        text = record[text_field]
        if isinstance(text, str):
            yield text


def txt_has_paragraphs(path: Path) -> bool:
    """Whether a text file's first MiB holds a blank line (then documents are blank-line-separated blocks)."""
    with open_binary(path) as raw:
        return bool(_BLANK_LINE.search(raw.read(PARAGRAPH_PROBE)))


def _iter_txt(path: Path, stats: ReadStats, part: Part) -> Iterator[str]:
    """One document per line, or per blank-line-separated block when the file has paragraphs (whole files
    only); a document with a line that is not valid UTF-8 is skipped and counted."""
    if not (part.start == 0 and part.end is None and txt_has_paragraphs(path)):
        for line in _decoded(path, part):
            if line is None:
                stats.invalid_utf8 += 1
            elif line.strip():
                yield line.rstrip("\r\n")
        return
    block: list[str] = []
    broken = False
    for line in chain(_decoded(path, part), [""]):  # a final blank line closes the last block
        if line is None:
            broken = True
        elif line.strip():
            block.append(line.rstrip("\r\n"))
        elif block or broken:
            if broken:
                stats.invalid_utf8 += 1
            else:
                yield "\n".join(block)
            block, broken = [], False


def _iter_parquet(path: Path, text_field: str, name: str, part: Part) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    if text_field not in parquet.schema_arrow.names:
        raise LangadaptError(
            f"data source '{name}': '{path.name}' has no column '{text_field}' "
            f"(columns: {', '.join(parquet.schema_arrow.names)}) — set data.sources.{name}.text_field"
        )
    end = parquet.num_row_groups if part.end is None else part.end
    for batch in parquet.iter_batches(columns=[text_field], batch_size=4096, row_groups=range(part.start, end)):
        for text in batch.column(0).to_pylist():
            if isinstance(text, str):
                yield text


def load_arrow(path: Path, text_field: str, name: str):
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise LangadaptError(f"data source '{name}': '{path}' is a DatasetDict — point at one split's folder")
    if text_field not in dataset.column_names:
        raise LangadaptError(
            f"data source '{name}': '{path.name}' has no column '{text_field}' "
            f"(columns: {', '.join(dataset.column_names)}) — set data.sources.{name}.text_field"
        )
    return dataset


def _iter_arrow(path: Path, text_field: str, name: str, part: Part) -> Iterator[str]:
    dataset = load_arrow(path, text_field, name)
    end = len(dataset) if part.end is None else min(part.end, len(dataset))
    for row in dataset.select_columns([text_field]).select(range(part.start, end)):
        text = row[text_field]
        if isinstance(text, str):
            yield text


def iter_hub(source: SourceConfig, name: str) -> Iterator[str]:
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

