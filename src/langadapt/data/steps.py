"""langadapt's datatrove pipeline steps (the data stage's own reading, cleaning, language ID and output).

Each step is a datatrove `PipelineStep` run once per shard (`rank` is the shard's index in the plan).
Filters subclass `BaseFilter`, so datatrove counts every document a filter drops under
`dropped_<reason>`; the data stage adds those counts up per source. Dedup itself is datatrove's
`MinhashDedupBuckets` on the signature files `ShardWriter` leaves (see `langadapt.data.dedup`).

Phase "process": ShardReader → Normalizer → QualityFilter → LanguageFilter → ShardWriter
Phase "write":   SurvivorReader → DuplicateFilter → CorpusWriter
"""

from __future__ import annotations

import gzip
import io
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import xxhash
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.formatters.base import BaseFormatter
from datatrove.utils.batching import batched
from datatrove.utils.typeshelper import StatHints

from langadapt.data.clean import Cleaner
from langadapt.data.config import DataConfig, SourceConfig
from langadapt.data.corpus import jsonl_lines, open_gzip
from langadapt.data.dedup import EXACT_LAYOUT, BandLayout, MinhashSigner, dedup_key
from langadapt.data.langid import LanguageIdentifier
from langadapt.data.shards import Shard
from langadapt.data.sources import ReadStats, iter_hub, read_part
from langadapt.data.stats import TextStats

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REMOVAL_REASONS = ("exact_duplicate", "near_duplicate", "eval_overlap")
FILTER_BATCH = 256  # documents a filter judges at once (one timing and one stats update per batch)
SIGNATURE_BATCH = 1024  # documents signed, counted or written to a gzip file at once (one write per batch)


def shard_file(folder: Path, rank: int, suffix: str = ".jsonl.gz") -> Path:
    return Path(folder) / f"{rank:05d}{suffix}"


def source_of(data: DataConfig, shard: Shard) -> SourceConfig:
    return (data.eval_sources if shard.eval else data.sources)[shard.source]


class ShardReader(PipelineStep):
    """Reads a shard's documents; a document that cannot be read (bad UTF-8, bad JSON, no text field)
    counts as dropped, so a source's `read = kept + Σ dropped`."""

    type = "📖 - READER"
    name = "read"

    def __init__(self, data: DataConfig, plan: list[Shard]):
        super().__init__()
        self.data, self.plan = data, plan

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        shard = self.plan[rank]
        source = source_of(self.data, shard)
        read = ReadStats()
        texts = iter_hub(source, shard.source) if shard.hub else (
            text for part in shard.parts for text in read_part(part, source, shard.source, read))
        size = seconds = 0.0
        count = 0
        try:
            while shard.read_limit is None or count < shard.read_limit:
                start = time.perf_counter()
                text = next(texts, None)
                seconds += time.perf_counter() - start
                if text is None:
                    break
                count += 1
                size += len(text.encode("utf-8"))
                yield Document(text=text, id=str(count - 1))
        finally:
            self.stats.time_stats.update(seconds)
            self.stat_update("read", value=count)
            self.stat_update("input_bytes", value=int(size))
            for reason in ("invalid_utf8", "invalid_json", "missing_field"):
                self.stat_update(f"dropped_{reason}", value=getattr(read, reason))


class Normalizer(BaseFormatter):
    """Unicode and whitespace normalisation (`data.clean`); counts the documents it changed."""

    name = "normalize"

    def __init__(self, data: DataConfig):
        super().__init__()
        self.cleaner = Cleaner(data.clean)

    def format(self, text: str) -> str:
        return self.cleaner.normalize(text)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        changed, seen, seconds = 0, 0, 0.0
        try:
            for doc in data:
                seen += 1
                start = time.perf_counter()
                text = self.format(doc.text)
                seconds += time.perf_counter() - start
                changed += text != doc.text
                doc.text = text
                yield doc
        finally:
            self.stats.time_stats.update(seconds)
            self.stat_update("normalized", value=changed)
            self.stat_update("total", value=seen)


class BatchCountingFilter(BaseFilter):
    """datatrove's `BaseFilter`, its counters (`total`, `forwarded`, `dropped`, `dropped_<reason>`) added
    once per batch instead of per document: two `stat_update` calls a document cost ~2 µs, ~7 % of the
    whole pipeline on short documents. Counts are flushed even when the consumer stops mid-batch. No
    exclusion writer: the stage reports dropped documents by count and reason."""

    def __init__(self) -> None:
        super().__init__(batch_size=FILTER_BATCH)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        seen = kept = 0
        reasons: Counter[str] = Counter()
        try:
            for batch in batched(data, self.batch_size):
                self.stat_update("batches")
                with self.track_time("batch"):
                    results = self.filter_batch(batch)
                for doc, result in zip(batch, results, strict=True):
                    seen += 1
                    keep, reason = get_filter_result(result)
                    if keep:
                        kept += 1
                        yield doc
                    elif reason:
                        reasons[reason] += 1
        finally:
            self.stat_update(StatHints.total, value=seen)
            self.stat_update(StatHints.forwarded, value=kept)
            self.stat_update(StatHints.dropped, value=seen - kept)
            for reason, count in reasons.items():
                self.stat_update(f"dropped_{reason}", value=count)


class QualityFilter(BatchCountingFilter):
    """The `data.clean` filters (first failing one is the reason); eval texts only lose empty ones."""

    name = "quality"

    def __init__(self, data: DataConfig, plan: list[Shard]):
        super().__init__()
        self.cleaner, self.plan = Cleaner(data.clean), plan
        self._eval = False

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        return [self.filter(doc) for doc in batch]

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._eval:
            return (False, "empty") if not doc.text.strip() else True
        reason = self.cleaner.rejection(doc.text)
        return True if reason is None else (False, reason)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        self._eval = self.plan[rank].eval
        return super().run(data, rank, world_size)


class LanguageFilter(BatchCountingFilter):
    """Drops training documents whose top language is not their source's (or below `min_confidence`);
    counts the languages it saw as `language_<code>` and which detector decided as `decided_by_<backend>`."""

    name = "language"

    def __init__(self, data: DataConfig, plan: list[Shard], codes: list[str]):
        super().__init__()
        assert data.langid is not None
        self.data, self.plan, self.codes = data, plan, codes
        self.identifier = LanguageIdentifier.from_config(data.langid, codes)
        self._expected: str | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        """Languages are counted per batch: on a capped shard that stops mid-batch, the documents after the
        stop are counted too (at most FILTER_BATCH - 1)."""
        found = self.identifier.identify([doc.text for doc in batch])
        languages = Counter(code for code, _ in found)
        for code, count in languages.items():
            self.stat_update(f"language_{code}", value=count)
        if self._expected is None:
            return [True] * len(batch)
        floor = self.data.langid.min_confidence
        return [True if code == self._expected and confidence >= floor else (False, "language")
                for code, confidence in found]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        shard = self.plan[rank]
        language = source_of(self.data, shard).language
        self._expected = self.identifier.canonical(language) if language and not shard.eval else None
        self.identifier.decided_by.clear()
        try:
            yield from super().run(data, rank, world_size)
        finally:
            for backend, count in self.identifier.decided_by.items():
                self.stat_update(f"decided_by_{backend}", value=count)


class ShardWriter(PipelineStep):
    """Writes the shard's surviving documents and their dedup signatures (exact hash, MinHash bands).

    A shard with `stop_after` stops once it holds that many distinct texts (`max_documents`)."""

    type = "💽 - WRITER"
    name = "survivors"

    def __init__(self, data: DataConfig, plan: list[Shard], work: Path, seed: int):
        super().__init__()
        self.plan, self.work = plan, Path(work)
        dedup = data.dedup
        self.dedup = dedup is not None
        self.exact = dedup is not None and dedup.exact
        self.eval_signatures = dedup is not None and dedup.eval_overlap
        self.signer = MinhashSigner(dedup.near, seed) if dedup is not None and dedup.near is not None else None

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        shard = self.plan[rank]
        sign = self.dedup and (not shard.eval or self.eval_signatures)
        path = shard_file(self.work / "survivors", rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        hashes: list[int] = []
        keys: list[str] = []
        lines: list[str] = []
        band_files = self._open_bands(rank) if sign and self.signer else []
        distinct: set[int] = set()
        count = 0
        seconds = 0.0
        with gzip.open(tmp, "wb", compresslevel=1) as out:
            for doc in data:
                start = time.perf_counter()
                lines.append(doc.text)
                if len(lines) == SIGNATURE_BATCH:
                    out.write(jsonl_lines(lines))
                    lines.clear()
                count += 1
                if sign:
                    key = dedup_key(doc.text)
                    hashes.append(xxhash.xxh64_intdigest(key.encode("utf-8")))
                    if band_files:
                        keys.append(key)
                        if len(keys) == SIGNATURE_BATCH:
                            self._sign(keys, count - len(keys), band_files)
                seconds += time.perf_counter() - start
                if shard.stop_after is not None:
                    distinct.add(hashes[-1] if sign else count)  # without dedup every document counts
                    if len(distinct) >= shard.stop_after:
                        self.stat_update("truncated")
                        break
            start = time.perf_counter()
            out.write(jsonl_lines(lines))
            self._sign(keys, count - len(keys), band_files)
        self._finish_bands(band_files, rank)
        if sign and self.exact:
            self._write_exact(hashes, rank)
        tmp.replace(path)
        self.stats.time_stats.update(seconds + time.perf_counter() - start)
        self.stat_update("survivors", value=count)
        return
        yield  # a sink: nothing goes further

    def _open_bands(self, rank: int) -> list[io.BufferedWriter]:
        files = []
        for band in range(self.signer.layout.bands):
            path = self.work / "minhash" / f"bucket_{band:03d}" / f"{rank:05d}.unsorted"
            path.parent.mkdir(parents=True, exist_ok=True)
            files.append(path.open("wb"))
        return files

    def _sign(self, keys: list[str], first: int, band_files: list[io.BufferedWriter]) -> None:
        """Append the MinHash band records of `keys` (documents first, first + 1, ...) and clear `keys`."""
        if band_files and keys:
            present, band_keys = self.signer.band_keys(keys)
            for band, handle in enumerate(band_files):
                records = np.empty(len(present), dtype=self.signer.layout.record)
                records["key"] = band_keys[:, band]
                records["doc"] = present + first
                handle.write(records.tobytes())
        keys.clear()

    def _finish_bands(self, band_files: list[io.BufferedWriter], rank: int) -> None:
        for band, handle in enumerate(band_files):
            handle.close()
            unsorted = Path(handle.name)
            records = np.fromfile(unsorted, dtype=self.signer.layout.record)
            self.signer.layout.write_sorted(self.work / "minhash", rank, band, records["key"], records["doc"])
            unsorted.unlink()

    def _write_exact(self, hashes: list[int], rank: int) -> None:
        values = np.array(hashes, dtype=np.uint64)
        EXACT_LAYOUT.write_sorted(self.work / "exact", rank, 0, values, np.arange(len(hashes), dtype=np.uint32))


class SurvivorReader(PipelineStep):
    """Reads back what `ShardWriter` kept of a shard, in order."""

    type = "📖 - READER"
    name = "read survivors"

    def __init__(self, work: Path):
        super().__init__()
        self.work = Path(work)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with open_gzip(shard_file(self.work / "survivors", rank)) as handle:
            for index, line in enumerate(handle):
                yield Document(text=orjson.loads(line)["text"], id=str(index))


class DuplicateFilter(BatchCountingFilter):
    """Drops the documents the cluster phase marked (`removed/<shard>.npy`: index, reason) and, for a
    source with `max_documents`, those past the shard's quota."""

    name = "dedup"

    def __init__(self, work: Path, quotas: dict[int, int]):
        super().__init__()
        self.work, self.quotas = Path(work), quotas
        self._removed: dict[int, str] = {}
        self._left: int | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        reason = self._removed.get(int(doc.id))
        if reason is not None:
            return False, reason
        if self._left is not None:
            if self._left <= 0:
                return False, "max_documents"
            self._left -= 1
        return True

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        return [self.filter(doc) for doc in batch]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = shard_file(self.work / "removed", rank, ".npy")
        removed = np.load(path) if path.exists() else np.zeros((0, 2), np.int64)
        self._removed = {int(i): REMOVAL_REASONS[int(r)] for i, r in removed}
        self._left = self.quotas.get(rank)
        return super().run(data, rank, world_size)


class CorpusWriter(PipelineStep):
    """Writes a shard's final documents as one gzip member (no timestamp: same documents, same bytes) and
    counts documents, characters, words and tokens (on every `token_every[shard]`-th document, the rest
    estimated); the stage concatenates the members per source."""

    type = "💽 - WRITER"
    name = "corpus"

    def __init__(self, work: Path, tokenizer: PreTrainedTokenizerBase | None,
                 token_every: dict[int, int] | None = None):
        super().__init__()
        self.work, self.tokenizer, self.token_every = Path(work), tokenizer, token_every or {}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        path = shard_file(self.work / "corpus", rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        counts = TextStats(self.tokenizer, self.token_every.get(rank, 1))
        batch: list[str] = []
        seconds = 0.0
        with tmp.open("wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=3, mtime=0) as out:
            for doc in data:
                start = time.perf_counter()
                batch.append(doc.text)
                if len(batch) == SIGNATURE_BATCH:
                    out.write(jsonl_lines(batch))
                    counts.add(batch)
                    batch = []
                seconds += time.perf_counter() - start
            start = time.perf_counter()
            out.write(jsonl_lines(batch))
            counts.add(batch)
        tmp.replace(path)
        self.stats.time_stats.update(seconds + time.perf_counter() - start)
        for key, value in counts.to_dict().items():
            if key in ("documents", "characters", "words", "tokens"):
                self.stat_update(key, value=value)
        if counts.with_tokens:
            self.stat_update("token_sample_documents", value=counts.sampled_documents)
        return
        yield


def band_layout(data: DataConfig, seed: int) -> BandLayout | None:
    """The MinHash band layout `ShardWriter` writes with, or None without near dedup."""
    if data.dedup is None or data.dedup.near is None:
        return None
    return MinhashSigner(data.dedup.near, seed).layout
