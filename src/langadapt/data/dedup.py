"""Duplicate keys and MinHash band keys, written to disk in sorted files that collision tasks cut by range.

Exact: a 64-bit xxhash of the text case-folded with punctuation and spacing removed, so copies that differ
only in those count as duplicates. Near: MinHash over word n-gram shingles of that key, cut into LSH bands
(`bands × rows` hashes) chosen for the threshold the way datasketch chooses them. Each shard writes one
sorted file per band (datatrove's folders: `bucket_<band>/<shard>.minhash.sig`) of 12-byte records: a 64-bit
key of the band's `rows` minima and the document's index, sorted by key. datatrove stores the minima
themselves (13 × 4 bytes + 4 at the default 9 bands of 13 rows: 504 bytes a document against 108, more
than the text of a short paragraph). Two documents share a band key when their band's minima are equal, or
by chance with probability 2^-64 per pair: at a billion documents, ~0.03 false band collisions per band.
Exact hashes are a one-band file of the same records. `BandCollisions` (stage 2) then finds the colliding
documents per band and key range: datatrove's `MinhashDedupBuckets` merges the files through a Python heap
(~5 µs a record here), this sorts a range at a time with numpy (~0.1 µs); each task holds at most
`RECORDS_PER_TASK` records, so memory stays flat in the corpus size.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from langadapt.data.config import NearDedupConfig

_NON_WORD = re.compile(r"[\W_]+")
SIG_SUFFIX = ".minhash.sig"


def dedup_key(text: str) -> str:
    """The text as exact dedup compares it: case-folded words separated by single spaces."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def exact_hash(text: str) -> int:
    return xxhash.xxh64_intdigest(dedup_key(text).encode("utf-8"))


WORD_BASE = 0x100000001B3  # odd, so invertible mod 2^64
SHINGLE_BASE = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: spreads a polynomial hash's weak low bits over all 64."""
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xFF51AFD7ED558CCD)
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xC4CEB9FE1A85EC53)
    values ^= values >> np.uint64(33)
    return values


class ShingleHasher:
    """64-bit hashes of the word n-gram shingles of dedup keys, a whole batch in a few numpy passes.

    A word's hash is `fmix64(Σ_j byte_j · WORD_BASE^j mod 2^64)` over its UTF-8 bytes; a shingle's is
    `fmix64(Σ_j word_j · SHINGLE_BASE^j mod 2^64)` over its words. Shingles are the key's `n`-word windows;
    a key of at most `n` words is one shingle, an empty key none. Both sums come from prefix sums over the
    batch's bytes and words, so no Python runs per word: ~3× faster than one xxhash call per shingle.
    """

    def __init__(self, n: int):
        self.n = n
        self._shingle_powers = [np.uint64(pow(SHINGLE_BASE, j, 1 << 64)) for j in range(n)]
        self._powers = self._inverse_powers = np.zeros(0, np.uint64)

    def _grow(self, size: int) -> None:
        """`_powers[i]` = WORD_BASE^i and `_inverse_powers[i]` = WORD_BASE^-i (mod 2^64) for i < size."""
        size = max(size, 2 * len(self._powers), 1 << 16)
        for name, base in (("_powers", WORD_BASE), ("_inverse_powers", pow(WORD_BASE, -1, 1 << 64))):
            powers = np.full(size, base, np.uint64)
            powers[0] = 1
            setattr(self, name, np.cumprod(powers))

    def __call__(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shingles per key, every key's shingle hashes one after the other)."""
        data = np.frombuffer(("\n".join(keys) + "\n").encode("utf-8"), np.uint8)
        if len(data) > len(self._powers):
            self._grow(len(data))
        separator = data <= 32  # a key's words are separated by single spaces, keys by newlines
        edges = np.flatnonzero(np.diff(separator.view(np.int8), prepend=np.int8(1)))
        starts, ends = edges[0::2], edges[1::2]  # the data ends in a separator: every word ends
        prefix = np.zeros(len(data) + 1, np.uint64)
        np.cumsum(data * self._powers[: len(data)], out=prefix[1:])
        words = fmix64((prefix[ends] - prefix[starts]) * self._inverse_powers[starts])
        per_key = np.bincount(np.cumsum(data == 10)[starts], minlength=len(keys))
        counts = np.where(per_key > self.n, per_key - self.n + 1, np.minimum(per_key, 1))
        key = np.repeat(np.arange(len(keys)), counts)  # each shingle's key, then its first word's index
        first = (np.cumsum(per_key) - per_key)[key] + np.arange(len(key)) - np.repeat(np.cumsum(counts) - counts,
                                                                                         counts)
        length = np.minimum(per_key[key], self.n)
        hashes = words[first]
        last = max(len(words) - 1, 0)
        for j in range(1, self.n):
            hashes += np.where(j < length, words[np.minimum(first + j, last)], np.uint64(0)) * self._shingle_powers[j]
        return counts, fmix64(hashes)


def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands × rows ≤ num_perm minimising false positives + false negatives (equal weights)
    under the S-curve 1 - (1 - s^rows)^bands — datasketch's choice for `MinHashLSH(threshold, num_perm)`."""
    grid_low = np.linspace(0.0, threshold, 201)
    grid_high = np.linspace(threshold, 1.0, 201)
    best = (math.inf, 1, num_perm)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = np.trapezoid(1 - (1 - grid_low**rows) ** bands, grid_low)
            false_negative = np.trapezoid((1 - grid_high**rows) ** bands, grid_high)
            best = min(best, (0.5 * false_positive + 0.5 * false_negative, bands, rows))
    return best[1], best[2]


@dataclass(frozen=True)
class BandLayout:
    """`bands` sorted files a shard, of (64-bit key, document index) records."""

    bands: int
    record = np.dtype([("key", "<u8"), ("doc", "<u4")])  # packed, little-endian: 12 bytes

    def write_sorted(self, folder: Path, shard: int, band: int, keys: np.ndarray, docs: np.ndarray) -> None:
        """Write (key, doc) records sorted by key, through a temporary name."""
        order = np.argsort(keys, kind="stable")  # collision tasks select ranges of keys
        records = np.empty(len(docs), dtype=self.record)
        records["key"] = keys[order]
        records["doc"] = docs[order]
        path = Path(folder) / f"bucket_{band:03d}" / f"{shard:05d}{SIG_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(records.tobytes())
        tmp.replace(path)


EXACT_LAYOUT = BandLayout(bands=1)


class MinhashSigner:
    """Batched MinHash signatures of shingle sets (one numpy pass per batch, not per document).

    Each of the `bands × rows` hash functions is a multiply-shift hash `(a·x + b mod 2^64) >> 32` of the
    shingle's 64-bit hash (`ShingleHasher`; a universal family; datatrove's `(a·x + b) mod (2^61 - 1)` costs
    twice as much).
    """

    def __init__(self, cfg: NearDedupConfig, seed: int):
        self.shingle_hashes = ShingleHasher(cfg.ngram)
        bands, self.rows = lsh_bands(cfg.threshold, cfg.num_perm)
        self.layout = BandLayout(bands=bands)
        generator = np.random.default_rng(seed)
        size = (bands * self.rows, 1)
        self._a = generator.integers(0, 2**64, size=size, dtype=np.uint64) | np.uint64(1)
        self._b = generator.integers(0, 2**64, size=size, dtype=np.uint64)

    def signatures(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(index of each dedup key that has shingles, its signature as a (n, bands × rows) uint32 matrix)."""
        counts, values = self.shingle_hashes(keys)
        present = np.flatnonzero(counts)
        if not present.size:
            return present, np.zeros((0, self.layout.bands * self.rows), np.uint32)
        values = values[None, :]
        # One (hashes, shingles) buffer, in place from here. Hash-major, each hash function's values are
        # contiguous and reduce along a row: 2.5× faster than shingle-major rows on a batch of 1,024 keys,
        # whose (shingles, hashes) buffer does not fit in cache.
        permuted = np.multiply(self._a, values)
        permuted += self._b
        offsets = np.concatenate([[0], np.cumsum(counts[present])[:-1]])
        minima = np.minimum.reduceat(permuted, offsets, axis=1)
        minima >>= np.uint64(32)  # the high half's minimum is the minimum's high half
        return present, minima.astype(np.uint32).T

    def band_keys(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(index of each dedup key that has shingles, one 64-bit key per band as a (n, bands) uint64 matrix):
        the band's minima taken two at a time as 64-bit words, chained through `fmix64` (a bijection)."""
        present, signatures = self.signatures(keys)
        minima = signatures.reshape(len(present), self.layout.bands, self.rows).astype(np.uint64)
        band_keys = np.zeros(minima.shape[:2], np.uint64)
        for row in range(0, self.rows, 2):
            word = minima[:, :, row] << np.uint64(32)
            if row + 1 < self.rows:
                word |= minima[:, :, row + 1]
            band_keys ^= word
            fmix64(band_keys)
        return present, band_keys


RECORDS_PER_TASK = 1_000_000  # band records one collision task holds (~60 MB with its sort buffers)


@dataclass(frozen=True)
class BandTask:
    """One collision task: the records of `band` in `folder` whose key is in [low, high)."""

    folder: str
    band: int
    layout: BandLayout
    low: int
    high: int | None  # None: to the end


def band_files(folder: Path, band: int) -> list[Path]:
    return sorted((Path(folder) / f"bucket_{band:03d}").glob(f"*{SIG_SUFFIX}"))


def plan_band_tasks(folder: Path, layout: BandLayout, per_task: int = RECORDS_PER_TASK) -> list[BandTask]:
    """Every band of `folder`, each cut into key ranges of at most about `per_task` records (the ranges come
    from quantiles of a sample of keys, so skewed keys still split evenly)."""
    tasks = []
    for band in range(layout.bands):
        files = band_files(folder, band)
        maps = [np.memmap(path, dtype=layout.record, mode="r") for path in files if path.stat().st_size]
        count = sum(len(m) for m in maps)
        pieces = max(1, -(-count // per_task))
        bounds: list[int | None] = [0, None]
        if pieces > 1:
            sample = np.sort(np.concatenate([m["key"][:: max(1, len(m) * pieces // 4096)] for m in maps]))
            inner = sample[(np.arange(1, pieces) * len(sample)) // pieces]
            bounds = [0, *sorted(set(inner.tolist()) - {0}), None]
        tasks += [BandTask(str(folder), band, layout, low, high) for low, high in itertools.pairwise(bounds)]
    return tasks


def band_collisions(task: BandTask) -> np.ndarray:
    """(shard, doc, shard, doc) rows: each document paired with the first document of its group of equal
    band keys, earlier one first (datatrove's `.dups` layout)."""
    keys, nodes = [], []
    for path in band_files(Path(task.folder), task.band):
        if not path.stat().st_size:
            continue
        records = np.memmap(path, dtype=task.layout.record, mode="r")
        begin = int(np.searchsorted(records["key"], task.low))
        end = len(records) if task.high is None else int(np.searchsorted(records["key"], task.high))
        part = np.asarray(records[begin:end])
        keys.append(part["key"])
        nodes.append((np.int64(int(path.name[: -len(SIG_SUFFIX)])) << 32) | part["doc"].astype(np.int64))
    if not keys:
        return np.zeros((0, 4), np.uint32)
    key, node = np.concatenate(keys), np.concatenate(nodes)
    order = np.lexsort((node, key))
    key, node = key[order], node[order]
    group_start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    first = np.repeat(group_start, np.diff(np.append(group_start, len(node))))
    member = np.flatnonzero(first != np.arange(len(node)))
    earlier, later = node[first[member]], node[member]
    return np.stack([earlier >> 32, earlier & 0xFFFFFFFF, later >> 32, later & 0xFFFFFFFF], axis=1).astype(np.uint32)


class BandCollisions(PipelineStep):
    """MinHash stage 2 (datatrove's `MinhashDedupBuckets`, vectorised): a task per band and hash range
    finds the documents whose band hashes collide and writes them as `<out>/<task>.dups`."""

    type = "🫂 - DEDUP"
    name = "band collisions"

    def __init__(self, tasks: list[BandTask], output_folder: Path):
        super().__init__()
        self.tasks, self.output_folder = tasks, Path(output_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            task = self.tasks[rank]
            pairs = band_collisions(task)
            out = self.output_folder / Path(task.folder).name / f"{rank:05d}.dups"
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(".tmp")
            tmp.write_bytes(pairs.tobytes())
            tmp.replace(out)
        self.stat_update("pairs", value=len(pairs))
        return
        yield
