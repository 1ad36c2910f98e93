"""Cut the data stage's input into shards: the tasks datatrove's executors run, one process each.

The plan depends on the files alone — never on the number of workers — so any worker count reads the
same shards, writes the same bytes, and a re-run with other workers resumes the shards already done.
Shards are numbered in reading order (eval sources first, then training sources in config order, files in
order), and that order is what "first occurrence" means for dedup and `max_documents`.

- JSON Lines and line-per-document text: byte ranges of about `shard_bytes` (a `.gz` file is decompressed
  up to a shard's start — cheap for files up to a few GB; split bigger corpora into several files).
- Parquet: groups of row groups; a `datasets` folder: ranges of rows.
- Paragraph text files, hub datasets and sources with `max_documents`: one shard (a capped source stops
  reading once it has enough documents, which needs one reader in order).
"""

from __future__ import annotations

import gzip
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from langadapt.data.config import DataConfig, SourceConfig
from langadapt.data.sources import Part, is_hub_source, load_arrow, source_parts, txt_has_paragraphs

MB = 1_000_000
AUTO_SHARDS = 64
MIN_SHARD, MAX_SHARD = 1 * MB, 64 * MB
_GZIP_PROBE = 4 * MB  # compressed bytes decompressed to estimate a .gz file's size


@dataclass(frozen=True)
class Shard:
    """One task: `parts` read one after the other. A training shard with `stop_after` stops once it has
    that many distinct documents past the filters; an eval shard with `read_limit` reads at most that many."""

    index: int
    source: str
    eval: bool
    parts: tuple[Part, ...]
    hub: bool = False
    stop_after: int | None = None
    read_limit: int | None = None


def plan_shards(cfg: DataConfig, shard_mb: float | None = None) -> list[Shard]:
    """Every eval and training source's shards, in reading order."""
    groups = [(True, cfg.eval_sources), (False, cfg.sources)]
    parts: dict[tuple[bool, str], list[Part]] = {}
    sizes: dict[Part, int] = {}
    for is_eval, sources in groups:
        for name, source in sources.items():
            parts[is_eval, name] = [] if is_hub_source(source) else source_parts(source, name)
            sizes.update((part, part_bytes(part, source.text_field, name)) for part in parts[is_eval, name])
    total = sum(sizes.values())
    shard_bytes = shard_mb * MB if shard_mb else min(MAX_SHARD, max(MIN_SHARD, total / AUTO_SHARDS))
    shards: list[Shard] = []
    for is_eval, sources in groups:
        for name, source in sources.items():
            for pieces in _source_pieces(source, parts[is_eval, name], sizes, shard_bytes):
                shards.append(Shard(
                    index=len(shards), source=name, eval=is_eval, parts=pieces, hub=is_hub_source(source),
                    stop_after=source.max_documents if not is_eval else None,
                    read_limit=source.max_documents if is_eval else None,
                ))
    return shards


def _source_pieces(
    source: SourceConfig, parts: list[Part], sizes: dict[Part, int], shard_bytes: float
) -> list[tuple[Part, ...]]:
    if not parts:  # a hub dataset: one streaming reader
        return [()]
    if source.max_documents is not None:
        return [tuple(parts)]
    return [(piece,) for part in parts for piece in split_part(part, sizes[part], shard_bytes)]


def split_part(part: Part, size: int, shard_bytes: float) -> list[Part]:
    """`part` (a whole file) cut into pieces of about `shard_bytes`."""
    count = max(1, math.ceil(size / shard_bytes))
    if count == 1 or (part.fmt == "txt" and txt_has_paragraphs(Path(part.path))):
        return [part]
    if part.fmt == "parquet":
        return _row_group_pieces(part, shard_bytes)
    if part.fmt == "arrow":
        from datasets import load_from_disk

        rows = load_from_disk(part.path).num_rows
        bounds = [rows * i // count for i in range(count + 1)]
    else:
        bounds = [size * i // count for i in range(count + 1)]
    return [Part(part.path, part.fmt, start, end if i < count - 1 else None, first=part.first and i == 0)
            for i, (start, end) in enumerate(itertools.pairwise(bounds))]


def part_bytes(part: Part, text_field: str, name: str) -> int:
    """The (decompressed) size of a whole file, estimated for large `.gz` files from their first 4 MB."""
    path = Path(part.path)
    if part.fmt == "parquet":
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if part.fmt == "arrow":
        return int(load_arrow(path, text_field, name).data.nbytes)
    if not path.name.endswith(".gz"):
        return path.stat().st_size
    compressed = path.stat().st_size
    with path.open("rb") as raw, gzip.GzipFile(fileobj=raw) as unzipped:
        out = 0
        while chunk := unzipped.read(1 << 20):
            out += len(chunk)
            if raw.tell() >= _GZIP_PROBE:
                return int(out * compressed / raw.tell())
    return out


def _row_group_pieces(part: Part, shard_bytes: float) -> list[Part]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(part.path).metadata
    pieces, start, filled = [], 0, 0
    for group in range(metadata.num_row_groups):
        filled += metadata.row_group(group).total_byte_size
        if filled >= shard_bytes and group + 1 < metadata.num_row_groups:
            pieces.append(Part(part.path, part.fmt, start, group + 1, first=part.first and not pieces))
            start, filled = group + 1, 0
    pieces.append(Part(part.path, part.fmt, start, None, first=part.first and not pieces))
    return pieces
