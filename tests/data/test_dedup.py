"""Dedup keys, MinHash signatures and LSH bands, band collisions on disk, and duplicate clusters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from langadapt.data import clusters
from langadapt.data.clusters import DocumentIndex, UnionFind, removals
from langadapt.data.config import NearDedupConfig
from langadapt.data.dedup import (
    EXACT_LAYOUT,
    MASK64,
    SHINGLE_BASE,
    WORD_BASE,
    BandLayout,
    MinhashSigner,
    ShingleHasher,
    band_collisions,
    dedup_key,
    exact_hash,
    lsh_bands,
    plan_band_tasks,
)
from langadapt.data.shards import Shard


def test_exact_key_ignores_case_punctuation_and_spacing() -> None:
    assert dedup_key("Egin  KLIK, hemen!") == dedup_key("egin klik hemen") == "egin klik hemen"
    assert exact_hash("Egin KLIK, hemen!") == exact_hash("egin klik  hemen")
    assert exact_hash("egin klik hemen") != exact_hash("egin klik han")


def reference_fmix(value: int) -> int:
    """MurmurHash3's 64-bit finaliser on a Python int."""
    for multiplier in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        value = ((value ^ (value >> 33)) * multiplier) & MASK64
    return value ^ (value >> 33)


def reference_shingle_hashes(key: str, n: int) -> list[int]:
    """`ShingleHasher`'s documented formula, one Python int at a time."""
    words = [reference_fmix(sum(b * pow(WORD_BASE, j, 1 << 64) for j, b in enumerate(w)) & MASK64)
             for w in key.encode("utf-8").split()]
    windows = [words] if len(words) <= n else [words[i : i + n] for i in range(len(words) - n + 1)]
    return [reference_fmix(sum(w * pow(SHINGLE_BASE, j, 1 << 64) for j, w in enumerate(window)) & MASK64)
            for window in windows if window]


def test_shingle_hashes_are_the_documented_polynomials() -> None:
    rng = np.random.default_rng(0)
    vocabulary = ["a", "b", "ab", "ba", "kaixo", "žodis", "ёлка", "日本", "x" * 300]
    keys = ["", dedup_key("!!"), dedup_key("A, b"), "a b c d e", "a b c d e f"]
    keys += [" ".join(rng.choice(vocabulary, size=rng.integers(0, 12))) for _ in range(300)]
    hasher = ShingleHasher(5)
    counts, hashes = hasher(keys)
    expected = [reference_shingle_hashes(key, 5) for key in keys]
    assert counts.tolist() == [len(e) for e in expected]
    assert counts[:5].tolist() == [0, 0, 1, 1, 2]  # empty keys have none; up to n words are one shingle
    assert hashes.tolist() == [h for e in expected for h in e]
    long_key = " ".join(rng.choice(vocabulary, size=2_500))  # ~90 KB: more bytes than the powers first computed
    assert hasher([long_key])[1].tolist() == reference_shingle_hashes(long_key, 5)
    assert len(set(hasher(["a b", "b a", "ab"])[1].tolist())) == 3  # word order and boundaries count


@pytest.mark.parametrize(("threshold", "num_perm"), [(0.8, 128), (0.7, 128), (0.5, 256), (0.9, 64)])
def test_lsh_bands_are_datasketchs_choice(threshold: float, num_perm: int) -> None:
    from datasketch.lsh import _optimal_param

    assert lsh_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_signatures_estimate_jaccard() -> None:
    signer = MinhashSigner(NearDedupConfig(num_perm=256, threshold=0.8), seed=3)
    words = [f"hitza{i}" for i in range(200)]
    a = " ".join(words)
    b = " ".join(words[:180] + [f"beste{i}" for i in range(20)])  # 176 shared 5-grams of 216
    present, signatures = signer.signatures([dedup_key(t) for t in (a, "", b, a.upper())])
    assert present.tolist() == [0, 2, 3]  # the empty key has no signature
    estimate = (signatures[0] == signatures[1]).mean()
    assert abs(estimate - 176 / 216) < 4 * np.sqrt(0.8 * 0.2 / signatures.shape[1])
    assert (signatures[0] == signatures[2]).all()  # the same key after case folding


def test_band_keys_chain_each_bands_minima_and_collide_when_a_band_is_equal() -> None:
    signer = MinhashSigner(NearDedupConfig(), seed=5)  # 9 bands of 13 rows
    words = [f"hitza{i}" for i in range(60)]
    texts = [" ".join(words), " ".join([*words[:57], "beste", "bat", "hemen"]), " ".join(reversed(words)), ""]
    keys = [dedup_key(t) for t in texts]
    present, band_keys = signer.band_keys(keys)
    _, minima = signer.signatures(keys)
    assert present.tolist() == [0, 1, 2] and band_keys.shape == (3, signer.layout.bands) == (3, 9)
    for doc in range(3):
        for band in range(9):
            rows = [int(v) for v in minima[doc, band * 13 : (band + 1) * 13]] + [0]  # the odd row pairs with 0
            expected = 0
            for high, low in zip(rows[0::2], rows[1::2], strict=False):
                expected = reference_fmix(expected ^ (high << 32 | low))
            assert int(band_keys[doc, band]) == expected
    for band in range(9):
        same = (minima[0, band * 13 : (band + 1) * 13] == minima[1, band * 13 : (band + 1) * 13]).all()
        assert (band_keys[0, band] == band_keys[1, band]) == same
    assert 0 < (band_keys[0] == band_keys[1]).sum() < 9  # near copies share some bands, not all
    assert not (band_keys[0] == band_keys[2]).any()


def write_band(folder: Path, shard: int, records: list[tuple[int, int]]) -> None:
    keys = np.array([key for key, _ in records], dtype=np.uint64)
    BandLayout(bands=1).write_sorted(folder, shard, 0, keys, np.array([doc for _, doc in records], dtype=np.uint32))


@pytest.mark.parametrize("per_task", [1, 100])
def test_band_collisions_pair_each_document_with_the_first_of_its_group(tmp_path: Path, per_task: int) -> None:
    write_band(tmp_path, 0, [(56, 0), (78, 1), (56, 2)])
    write_band(tmp_path, 3, [(56, 0), (57, 1), (99, 2)])
    write_band(tmp_path, 4, [])
    layout = BandLayout(bands=1)
    assert layout.record.itemsize == 12
    tasks = plan_band_tasks(tmp_path, layout, per_task=per_task)
    assert len(tasks) == (1 if per_task == 100 else 5)  # ranges cut at quantiles of the keys: 0, 56, 57, 78, 99
    pairs = np.concatenate([band_collisions(task) for task in tasks])
    assert sorted(map(tuple, pairs.tolist())) == [(0, 0, 0, 2), (0, 0, 3, 0)]
    exact = tmp_path / "exact"
    EXACT_LAYOUT.write_sorted(exact, 1, 0, np.array([2**64 - 1, 7], np.uint64), np.array([0, 1], np.uint32))
    EXACT_LAYOUT.write_sorted(exact, 2, 0, np.array([2**64 - 1], np.uint64), np.array([0], np.uint32))
    (task,) = plan_band_tasks(exact, EXACT_LAYOUT)
    assert band_collisions(task).tolist() == [[1, 0, 2, 0]]


def write_dups(path: Path, pairs: list[tuple[tuple[int, int], tuple[int, int]]]) -> Path:
    """A `.dups` file: (earlier shard, earlier doc, later shard, later doc) rows of uint32."""
    np.array([(*a, *b) for a, b in pairs], dtype=np.uint32).reshape(-1, 4).tofile(path)
    return path


def union_find_roots(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """The plain reference: node → the smallest node joined to it through the pairs."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


@pytest.mark.parametrize("seed", range(20))
def test_clusters_match_a_union_find_across_files(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clusters, "CHUNK", 7)  # several chunks per pass over the arrays
    rng = np.random.default_rng(seed)
    count, docs = int(rng.integers(1, 300)), int(rng.integers(2, 400))
    rows = np.stack([rng.integers(0, 4, count), rng.integers(0, docs, count),
                     rng.integers(0, 4, count), rng.integers(0, docs, count)], axis=1)
    files = [write_dups(tmp_path / f"{i}.dups", [((a, b), (c, d)) for a, b, c, d in part.tolist()])
             for i, part in enumerate(np.array_split(rows, 3))]
    index = DocumentIndex(files, shards=4)
    found = UnionFind(tmp_path / "parent.npy", index.size)
    for path in files:
        found.union(*index.positions(clusters.read_pair_file(path)))
    found.flatten()
    pairs = [tuple(pair) for pair in np.stack(index.positions(rows), axis=1).tolist()]
    expected = union_find_roots(pairs)
    assert {x: int(found.parent[x]) for x in expected} == expected
    untouched = set(range(index.size)) - set(expected)
    assert all(found.parent[x] == x for x in untouched)  # documents in no pair are their own cluster


def test_clusters_of_a_long_chain_in_shuffled_order(tmp_path: Path) -> None:
    order = np.random.default_rng(0).permutation(5_000)
    found = UnionFind(tmp_path / "parent.npy", 5_000)
    found.union(order[:-1], order[1:])
    found.flatten()
    assert set(np.asarray(found.parent).tolist()) == {0}


def test_positions_keep_reading_order_and_size_each_shard_by_its_last_paired_document(tmp_path: Path) -> None:
    files = [write_dups(tmp_path / "a.dups", [((0, 4), (2, 1))]), write_dups(tmp_path / "b.dups", [((2, 6), (2, 9))])]
    index = DocumentIndex(files, shards=4)
    assert index.offsets.tolist() == [0, 5, 5, 15, 15] and index.size == 15
    assert index.shard_of(np.array([0, 4, 5, 14])).tolist() == [0, 0, 2, 2]


def test_removal_reasons_eval_then_exact_then_near(tmp_path: Path) -> None:
    plan = [Shard(0, "dev", True, ()), Shard(1, "eu", False, ()), Shard(2, "eu", False, ())]
    exact = [write_dups(tmp_path / "exact.dups", [((0, 0), (1, 3)), ((1, 4), (2, 0))])]
    near = [write_dups(tmp_path / "near-0.dups", [((1, 3), (2, 1)), ((1, 4), (2, 2))]),
            write_dups(tmp_path / "near-1.dups", [((2, 2), (2, 7)), ((0, 1), (0, 2))])]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    found = dict(removals(plan, exact, near, scratch))
    codes = {0: "exact_duplicate", 1: "near_duplicate", 2: "eval_overlap"}
    named = {shard: [(int(d), codes[int(r)]) for d, r in rows] for shard, rows in found.items()}
    # 1/3 copies an eval text and 2/1 is near it: both in the eval text's cluster. 2/0 copies 1/4 (kept, first);
    # 2/2 is near 1/4, 2/7 near 2/2: one cluster, first occurrence kept. Eval texts never go.
    assert named == {1: [(3, "eval_overlap")], 2: [(0, "exact_duplicate"), (1, "eval_overlap"),
                                                   (2, "near_duplicate"), (7, "near_duplicate")]}
    assert dict(removals(plan, [], [], scratch)) == {}  # no pairs: nothing goes, nothing is mapped
