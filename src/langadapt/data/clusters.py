"""Duplicate clusters: which documents to drop, given the colliding pairs datatrove's buckets found.

Every pair of documents whose exact hash or one LSH band collides joins one cluster (union-find); the
cluster keeps its first document in reading order (eval texts come first, then training sources in
config order) and drops the others, each with one reason, checked in this order:

- `eval_overlap`: the cluster holds an eval text (training never sees what a later stage measures on);
- `exact_duplicate`: the document's exact hash equals an earlier document's;
- `near_duplicate`: otherwise (a MinHash band collision, directly or through other members).

Memory grows with the number of duplicated documents, not with the corpus.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from langadapt.data.shards import Shard

REASON_CODES = {"exact_duplicate": 0, "near_duplicate": 1, "eval_overlap": 2}  # steps.REMOVAL_REASONS order


def read_pairs(folder: Path) -> Iterator[tuple[int, int]]:
    """(earlier, later) node ids of the pairs in a folder of `.dups` files; node = shard << 32 | doc."""
    for path in sorted(Path(folder).glob("*.dups")):
        data = np.fromfile(path, dtype=np.uint32).reshape(-1, 4).astype(np.int64)
        earlier, later = (data[:, 0] << 32) | data[:, 1], (data[:, 2] << 32) | data[:, 3]
        yield from zip(earlier.tolist(), later.tolist(), strict=True)  # unpacking numpy rows cost ~2 µs a pair


class Clusters:
    """Union-find whose root is always the smallest node, i.e. the cluster's first document."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, node: int) -> int:
        root = node
        while (up := self.parent.get(root, root)) != root:
            root = up
        while node != root:  # path compression
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            low, high = sorted((root_a, root_b))
            self.parent[high] = low
            self.parent.setdefault(low, low)


def removals(plan: list[Shard], exact_pairs: Iterable[tuple[int, int]], near_pairs: Iterable[tuple[int, int]]
             ) -> dict[int, np.ndarray]:
    """shard → sorted (doc, reason code) rows of the training documents to drop."""
    clusters = Clusters()
    exact_twin: set[int] = set()
    for earlier, later in exact_pairs:
        clusters.union(earlier, later)
        exact_twin.add(max(earlier, later))
    for earlier, later in near_pairs:
        clusters.union(earlier, later)
    rows: dict[int, list[tuple[int, int]]] = {}
    for node in list(clusters.parent):
        root = clusters.find(node)
        shard = node >> 32
        if node == root or plan[shard].eval:
            continue
        if plan[root >> 32].eval:
            reason = "eval_overlap"
        else:
            reason = "exact_duplicate" if node in exact_twin else "near_duplicate"
        rows.setdefault(shard, []).append((node & 0xFFFFFFFF, REASON_CODES[reason]))
    return {shard: np.array(sorted(found), dtype=np.int64) for shard, found in rows.items()}


class DuplicateClusters(PipelineStep):
    """One task: reads every `.dups` file, writes `removed/<shard>.npy` for the shards that lose documents."""

    type = "🫂 - DEDUP"
    name = "clusters"

    def __init__(self, plan: list[Shard], work: Path):
        super().__init__()
        self.plan, self.work = plan, Path(work)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.track_time():
            found = removals(
                self.plan, read_pairs(self.work / "dups" / "exact"), read_pairs(self.work / "dups" / "minhash")
            )
            folder = self.work / "removed"
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.npy"):
                old.unlink()
            for shard, rows in found.items():
                tmp = folder / f"{shard:05d}.tmp.npy"
                np.save(tmp, rows)
                tmp.replace(folder / f"{shard:05d}.npy")
        self.stat_update("removed", value=sum(len(rows) for rows in found.values()))
        return
        yield
