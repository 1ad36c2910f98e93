"""Exact and near-duplicate detection on constructed duplicates, and eval-overlap removal."""

from __future__ import annotations

from langadapt.data.config import DedupConfig, NearDedupConfig
from langadapt.data.dedup import NearDuplicateIndex, dedup_key, exact_hash, shingles
from langadapt.data.ingest import Deduplicator


def test_exact_key_ignores_case_punctuation_and_spacing() -> None:
    assert dedup_key("Egin  KLIK, hemen!") == dedup_key("egin klik hemen") == "egin klik hemen"
    assert exact_hash("Egin KLIK, hemen!") == exact_hash("egin klik  hemen")
    assert exact_hash("egin klik hemen") != exact_hash("egin klik han")


def test_shingles() -> None:
    assert shingles("a b c d", 3) == [b"a b c", b"b c d"]
    assert shingles("A, b", 5) == [b"a b"]
    assert shingles("!!", 5) == []


def test_near_duplicates_found_and_distinct_texts_kept(basque_texts: list[str]) -> None:
    long = [t for t in dict.fromkeys(basque_texts) if len(t.split()) >= 40][:30]
    assert len(long) == 30
    index = NearDuplicateIndex(NearDedupConfig(threshold=0.7))
    for text in long:
        signature = index.signature(text)
        assert not index.seen(signature)  # real, different paragraphs are not near-duplicates
        index.add(signature)
    for text in long[:10]:
        words = text.split()
        words[-1] = "ALDATUTA"  # last word changed: Jaccard of 5-gram shingles (n-1)/(n+1) > 0.9
        assert index.seen(index.signature(" ".join(words)))
    assert len(index) == 30


def test_dedup_order_first_occurrence_wins_and_eval_overlap() -> None:
    base = " ".join(f"hitza{i}" for i in range(60))
    near = base.replace("hitza30", "besterik")
    dedup = Deduplicator(DedupConfig(near=NearDedupConfig(threshold=0.8)), seed=1)
    dedup.add_eval("Ebaluazio testua da hau, ez ikasi.")
    assert dedup.verdict("ebaluazio testua da hau ez ikasi") == "eval_overlap"
    assert dedup.verdict(base) is None
    assert dedup.verdict(base.upper()) == "exact_duplicate"
    assert dedup.verdict(near) == "near_duplicate"
    assert dedup.verdict("beste testu bat guztiz") is None


def test_dedup_switches() -> None:
    text = " ".join(f"hitza{i}" for i in range(30))
    exact_only = Deduplicator(DedupConfig(near=None), seed=1)
    assert exact_only.verdict(text) is None and exact_only.verdict(text) == "exact_duplicate"
    assert exact_only.verdict(text.replace("hitza5", "x")) is None
    off = Deduplicator(None, seed=1)
    assert off.verdict(text) is None and off.verdict(text) is None
