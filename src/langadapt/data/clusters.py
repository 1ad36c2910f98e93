"""Duplicate clusters: which documents to drop, given the colliding pairs datatrove's buckets found.

Every pair of documents whose exact hash or one LSH band collides joins one cluster (connected components); the
cluster keeps its first document in reading order (eval texts come first, then training sources in
config order) and drops the others, each with one reason, checked in this order:

- `eval_overlap`: the cluster holds an eval text (training never sees what a later stage measures on);
- `exact_duplicate`: the document's exact hash equals an earlier document's;
- `near_duplicate`: otherwise (a MinHash band collision, directly or through other members).

Memory does not grow with the pairs: they are read one `.dups` file at a time (a collision task's output, at
most about `RECORDS_PER_TASK` pairs) into a union-find whose parent array is a memory-mapped file in the
work folder, 9 bytes per document up to the last one of each shard that is in a pair; the operating system
pages it out when memory is short.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from langadapt.data.shards import Shard

REASON_CODES = {"exact_duplicate": 0, "near_duplicate": 1, "eval_overlap": 2}  # steps.REMOVAL_REASONS order
CHUNK = 1 << 20  # documents per pass over the memory-mapped arrays


def read_pair_file(path: Path) -> np.ndarray:
    """One `.dups` file's (earlier shard, earlier doc, later shard, later doc) rows."""
    return np.fromfile(path, dtype=np.uint32).reshape(-1, 4).astype(np.int64)


class DocumentIndex:
    """Dense positions for documents: shard s's document d is `offsets[s] + d`, so positions keep reading order
    and the smallest position of a cluster is its first document. Sized by the pairs: each shard spans up to
    its last document that is in one."""

    def __init__(self, files: Sequence[Path], shards: int):
        sizes = np.zeros(shards, np.int64)
        for path in files:
            rows = read_pair_file(path)
            for column in (0, 2):
                np.maximum.at(sizes, rows[:, column], rows[:, column + 1] + 1)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def positions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(earlier, later) positions of `.dups` rows."""
        return self.offsets[rows[:, 0]] + rows[:, 1], self.offsets[rows[:, 2]] + rows[:, 3]

    def shard_of(self, positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, positions, side="right") - 1


class UnionFind:
    """Vectorised union-find on a memory-mapped parent array. `parent[x] <= x` always (a root is hooked under
    a smaller root), so once flattened every position points at the smallest position of its cluster."""

    def __init__(self, path: Path, size: int):
        self.parent = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(size,))
        for start in range(0, size, CHUNK):
            self.parent[start:start + CHUNK] = np.arange(start, min(size, start + CHUNK))

    def find(self, x: np.ndarray) -> np.ndarray:
        """The roots of `x`; the positions looked up are set straight under them (path compression)."""
        roots = self.parent[x]
        while True:
            up = self.parent[roots]
            if np.array_equal(up, roots):
                break
            roots = up
        self.parent[x] = roots
        return roots

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        while len(a):
            left, right = self.find(a), self.find(b)
            apart = left != right
            a, b, left, right = a[apart], b[apart], left[apart], right[apart]
            np.minimum.at(self.parent, np.maximum(left, right), np.minimum(left, right))

    def flatten(self) -> None:
        """Every position straight under its root (pointer jumping, a chunk at a time, until nothing moves)."""
        moved = True
        while moved:
            moved = False
            for start in range(0, len(self.parent), CHUNK):
                parents = self.parent[start:start + CHUNK]
                up = self.parent[parents]
                if not np.array_equal(up, parents):
                    self.parent[start:start + CHUNK] = up
                    moved = True


def removals(plan: list[Shard], exact_files: Sequence[Path], near_files: Sequence[Path],
             scratch: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(shard, sorted (doc, reason code) rows) for each shard that loses training documents; `scratch` is an
    empty folder for the memory-mapped arrays."""
    index = DocumentIndex([*exact_files, *near_files], len(plan))
    if not index.size:
        return
    clusters = UnionFind(scratch / "parent.npy", index.size)
    exact_later = np.lib.format.open_memmap(scratch / "exact.npy", mode="w+", dtype=np.bool_, shape=(index.size,))
    for path in exact_files:
        earlier, later = index.positions(read_pair_file(path))
        clusters.union(earlier, later)
        exact_later[later] = True
    for path in near_files:
        clusters.union(*index.positions(read_pair_file(path)))
    clusters.flatten()
    is_eval = np.array([shard.eval for shard in plan], dtype=bool)
    for shard in range(len(plan)):
        low, high = int(index.offsets[shard]), int(index.offsets[shard + 1])
        if is_eval[shard] or low == high:
            continue  # eval texts never go
        roots = np.asarray(clusters.parent[low:high])
        docs = np.flatnonzero(roots != np.arange(low, high))
        if not len(docs):
            continue
        reason = np.where(exact_later[low:high][docs], REASON_CODES["exact_duplicate"], REASON_CODES["near_duplicate"])
        reason = np.where(is_eval[index.shard_of(roots[docs])], REASON_CODES["eval_overlap"], reason)
        yield shard, np.stack([docs, reason], axis=1)


class DuplicateClusters(PipelineStep):
    """One task: reads the `.dups` files one at a time, writes `removed/<shard>.npy` for the shards that lose
    documents."""

    type = "🫂 - DEDUP"
    name = "clusters"

    def __init__(self, plan: list[Shard], work: Path):
        super().__init__()
        self.plan, self.work = plan, Path(work)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        removed = 0
        with self.track_time():
            folder = self.work / "removed"
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.npy"):
                old.unlink()
            scratch = self.work / "clusters"
            scratch.mkdir(parents=True, exist_ok=True)
            dups = self.work / "dups"
            files = {kind: sorted((dups / kind).glob("*.dups")) for kind in ("exact", "minhash")}
            for shard, rows in removals(self.plan, files["exact"], files["minhash"], scratch):
                tmp = folder / f"{shard:05d}.tmp.npy"
                np.save(tmp, rows)
                tmp.replace(folder / f"{shard:05d}.npy")
                removed += len(rows)
            for array in scratch.glob("*.npy"):
                array.unlink()
        self.stat_update("removed", value=removed)
        return
        yield
