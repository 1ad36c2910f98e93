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

Each shard carries an estimated `cost` so the local executor can start the costliest first (longest
processing time first): with shards run in reading order, a source of many short documents at the end of
the config leaves one worker finishing it while the others wait. The order never changes the output.
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
_PROBE = 4 * MB  # bytes read (compressed bytes for .gz) to estimate a large file's size and line count
_READ = 1 << 20  # bytes per read while probing
BYTES_PER_DOCUMENT = 200  # cost model: a document's fixed cost (language ID, plumbing) ≈ that of 200 bytes


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
    cost: float = 0.0  # estimated documents + bytes / BYTES_PER_DOCUMENT; orders the tasks, nothing else


@dataclass(frozen=True)
class PartSize:
    """A whole file's (decompressed) bytes and documents (lines or rows), estimated for large files, and
    `units`: how many of what a `Part`'s start/end count (bytes; rows for arrow; row groups for parquet)."""

    bytes: int
    documents: int
    units: int

    @property
    def cost(self) -> float:
        return self.documents + self.bytes / BYTES_PER_DOCUMENT


def plan_shards(cfg: DataConfig, shard_mb: float | None = None) -> list[Shard]:
    """Every eval and training source's shards, in reading order."""
    groups = [(True, cfg.eval_sources), (False, cfg.sources)]
    parts: dict[tuple[bool, str], list[Part]] = {}
    sizes: dict[Part, PartSize] = {}
    for is_eval, sources in groups:
        for name, source in sources.items():
            parts[is_eval, name] = [] if is_hub_source(source) else source_parts(source, name)
            sizes.update((part, part_size(part, source.text_field, name)) for part in parts[is_eval, name])
    total = sum(size.bytes for size in sizes.values())
    shard_bytes = shard_mb * MB if shard_mb else min(MAX_SHARD, max(MIN_SHARD, total / AUTO_SHARDS))
    shards: list[Shard] = []
    for is_eval, sources in groups:
        for name, source in sources.items():
            for pieces, cost in _source_pieces(source, parts[is_eval, name], sizes, shard_bytes):
                shards.append(Shard(
                    index=len(shards), source=name, eval=is_eval, parts=pieces, hub=is_hub_source(source),
                    stop_after=source.max_documents if not is_eval else None,
                    read_limit=source.max_documents if is_eval else None, cost=cost,
                ))
    return shards


def costliest_first(plan: list[Shard]) -> list[int]:
    """Shard indices by decreasing estimated cost, ties in reading order (a hub stream's cost is unknown:
    it goes first). Costs are estimates, compared to 3 significant digits: the equal pieces of one file
    (whose byte spans differ by rounding) keep their reading order, so a worker reading a .gz file's pieces
    goes on from where the previous one stopped (`sources._lines`)."""
    return sorted(range(len(plan)), key=lambda rank: (-float(f"{plan[rank].cost:.3g}"), rank))


def piece_cost(piece: Part, size: PartSize) -> float:
    """The share of its file's cost a piece holds: its share of the file's bytes, rows or row groups."""
    if size.units <= 0:
        return size.cost
    span = (piece.end if piece.end is not None else size.units) - piece.start
    return size.cost * min(1.0, max(0.0, span / size.units))


def _source_pieces(
    source: SourceConfig, parts: list[Part], sizes: dict[Part, PartSize], shard_bytes: float
) -> list[tuple[tuple[Part, ...], float]]:
    """The source's shards, each as (its parts, its estimated cost)."""
    if not parts:  # a hub dataset: one streaming reader of unknown cost
        return [((), math.inf)]
    if source.max_documents is not None:
        return [(tuple(parts), sum(sizes[part].cost for part in parts))]
    return [((piece,), piece_cost(piece, sizes[part]))
            for part in parts for piece in split_part(part, sizes[part].bytes, shard_bytes)]


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


def part_size(part: Part, text_field: str, name: str) -> PartSize:
    """The (decompressed) size and document count of a whole file; estimated from the first 4 MB (of
    compressed bytes for `.gz`) when the file is larger."""
    path = Path(part.path)
    if part.fmt == "parquet":
        import pyarrow.parquet as pq

        metadata = pq.ParquetFile(path).metadata
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        return PartSize(size, metadata.num_rows, metadata.num_row_groups)
    if part.fmt == "arrow":
        table = load_arrow(path, text_field, name)
        return PartSize(int(table.data.nbytes), table.num_rows, table.num_rows)
    on_disk = path.stat().st_size
    with path.open("rb") as raw, (gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw) as reader:
        out = lines = 0
        last = b"\n"
        while chunk := reader.read(_READ):
            out, lines, last = out + len(chunk), lines + chunk.count(b"\n"), chunk[-1:]
            if _PROBE <= raw.tell() < on_disk:
                scale = on_disk / raw.tell()
                return PartSize(int(out * scale), int(lines * scale), int(out * scale))
    return PartSize(out, lines + (last != b"\n"), out)  # a last line without its newline counts too


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
