"""Duplicate clusters: which documents to drop, given the colliding pairs datatrove's buckets found.

Every pair of documents whose exact hash or one LSH band collides joins one cluster (connected components); the
cluster keeps its first document in reading order (eval texts come first, then training sources in
config order) and drops the others, each with one reason, checked in this order:

- `eval_overlap`: the cluster holds an eval text (training never sees what a later stage measures on);
- `exact_duplicate`: the document's exact hash equals an earlier document's;
- `near_duplicate`: otherwise (a MinHash band collision, directly or through other members).

Memory grows with the number of duplicated documents, not with the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from langadapt.data.shards import Shard

REASON_CODES = {"exact_duplicate": 0, "near_duplicate": 1, "eval_overlap": 2}  # steps.REMOVAL_REASONS order


def read_pairs(folder: Path) -> np.ndarray:
    """(earlier, later) node ids of the pairs in a folder of `.dups` files, one row each; node = shard << 32 | doc."""
    parts = [np.fromfile(path, dtype=np.uint32).reshape(-1, 4).astype(np.int64)
             for path in sorted(Path(folder).glob("*.dups"))]
    data = np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)
    return np.stack([(data[:, 0] << 32) | data[:, 1], (data[:, 2] << 32) | data[:, 3]], axis=1)


def cluster_roots(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(every node in a pair, sorted; the smallest node of its cluster) — connected components of the pairs'
    graph, the root being the cluster's first document. In numpy (hook each pair's larger root under its
    smaller one, then pointer jumping) rather than scipy.sparse.csgraph, whose import alone costs ~0.3 s of
    every run's serial time; the phase itself takes milliseconds either way."""
    nodes, index = np.unique(pairs, return_inverse=True)
    index = index.reshape(-1, 2)
    parent = np.arange(len(nodes))
    while True:
        left, right = parent[index[:, 0]], parent[index[:, 1]]
        apart = left != right
        if not apart.any():
            return nodes, nodes[parent]
        np.minimum.at(parent, np.maximum(left, right)[apart], np.minimum(left, right)[apart])
        while True:  # every node straight under its root again; labels only fall, so this ends
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def removals(plan: list[Shard], exact_pairs: np.ndarray | Sequence[tuple[int, int]],
             near_pairs: np.ndarray | Sequence[tuple[int, int]]) -> dict[int, np.ndarray]:
    """shard → sorted (doc, reason code) rows of the training documents to drop."""
    exact, near = (np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in (exact_pairs, near_pairs))
    nodes, roots = cluster_roots(np.concatenate([exact, near]))
    shards, root_shards = nodes >> 32, roots >> 32
    is_eval = np.array([shard.eval for shard in plan], dtype=bool)
    dropped = (nodes != roots) & ~is_eval[shards]
    reason = np.where(np.isin(nodes, exact.max(axis=1)), REASON_CODES["exact_duplicate"],
                      REASON_CODES["near_duplicate"])
    reason = np.where(is_eval[root_shards], REASON_CODES["eval_overlap"], reason)
    rows = np.stack([nodes & 0xFFFFFFFF, reason], axis=1)[dropped]  # nodes are sorted: so are docs per shard
    shard_of = shards[dropped]
    return {int(shard): rows[shard_of == shard] for shard in np.unique(shard_of)}


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
