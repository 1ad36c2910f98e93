"""Ingest: every document is either kept or counted against exactly one check; culprits are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langadapt.data.config import DataConfig
from langadapt.data.ingest import ingest_corpus
from langadapt.errors import LangadaptError


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def data_config(**sources: dict) -> DataConfig:
    eval_sources = sources.pop("eval_sources", {})
    return DataConfig(sources=sources, eval_sources=eval_sources)


def test_counts_add_up_and_wrong_language_goes(tmp_path: Path, basque_texts: list[str], english_texts: list[str]) -> None:
    english = [t for t in english_texts if len(t.split()) >= 10][:40]
    texts = basque_texts[:400] + english + basque_texts[:50]  # English intruders and 50 exact repeats
    cfg = data_config(eu={"path": str(write_jsonl(tmp_path / "eu.jsonl", texts)), "language": "eu"})
    kept: list[str] = []
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=None)["sources"]["eu"]
    assert report["read"] == len(texts)
    assert report["read"] == report["documents"] + sum(report["removed"].values())
    assert report["removed"]["language"] >= 38  # lingua misses at most a couple of the English paragraphs
    assert report["removed"]["exact_duplicate"] >= 50
    assert report["languages"]["en"] >= 38 and report["languages"]["eu"] > 250
    assert report["duplicates"] == report["removed"]["exact_duplicate"] + report["removed"].get("near_duplicate", 0)

    from langadapt.data.ingest import Ingestor

    ingest = Ingestor(cfg, seed=1, target_language="eu")
    ingest.source("eu", cfg.sources["eu"], kept.append)
    assert len(kept) == report["documents"] and len(set(kept)) == len(kept)
    assert not set(kept) & set(english[5:])


def test_max_documents_caps_the_kept_documents(tmp_path: Path, basque_texts: list[str]) -> None:
    path = write_jsonl(tmp_path / "eu.jsonl", basque_texts)
    cfg = data_config(eu={"path": str(path), "language": "eu", "max_documents": 100})
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None)["sources"]["eu"]
    assert report["documents"] == 100
    assert report["read"] == 100 + sum(report["removed"].values()) < len(basque_texts)


def test_eval_texts_are_normalised_and_never_leak_into_training(tmp_path: Path, basque_texts: list[str]) -> None:
    dev = [t for t in basque_texts if len(t.split()) >= 6][:20]
    train = write_jsonl(tmp_path / "train.jsonl", basque_texts[:300] + [t.upper() for t in dev])
    dev_file = write_jsonl(tmp_path / "dev.jsonl", [d.replace(" ", "\t ") for d in dev] + ["  "])
    cfg = data_config(eu={"path": str(train), "language": "eu"},
                      eval_sources={"dev": {"path": str(dev_file), "language": "eu"}})
    out = tmp_path / "out"
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=out)
    from langadapt.data.corpus import corpus_file, eval_file, read_texts

    assert list(read_texts(eval_file(out, "dev"))) == dev  # whitespace repaired, the blank text dropped
    assert report["eval"]["dev"]["removed"] == {"empty": 1} and report["eval"]["dev"]["normalized"] == 21
    assert report["sources"]["eu"]["removed"]["eval_overlap"] >= 20
    assert not {t.casefold() for t in read_texts(corpus_file(out, "eu"))} & {d.casefold() for d in dev}


@pytest.mark.parametrize(
    ("texts", "source", "needle"),
    [
        (["Laguntza", "Soila", "Tarteak"], {}, "all 3 documents were removed — 'min_chars' removed 3 — lower data.clean.min_chars"),
        (["This paragraph is plainly written in English, not Basque."] * 2 + ["Soila"], {"language": "eu"},
         "'language' removed 2 (then min_chars 1) — check data.sources.src.language"),
        ([], {}, "holds no documents"),
    ],
)
def test_empty_after_filtering_names_the_culprit(tmp_path: Path, texts: list[str], source: dict, needle: str) -> None:
    cfg = data_config(src={"path": str(write_jsonl(tmp_path / "s.jsonl", texts)), **source})
    with pytest.raises(LangadaptError, match="data source 'src'") as error:
        ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None)
    assert needle in str(error.value)


def test_every_filter_can_be_switched_off(tmp_path: Path) -> None:
    texts = ["Laguntza", "Laguntza", "This is English."]
    cfg = DataConfig(sources={"s": {"path": str(write_jsonl(tmp_path / "s.jsonl", texts)), "language": "eu"}},
                     clean=None, langid=None, dedup=None)
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None)["sources"]["s"]
    assert report["documents"] == 3 and report["removed"] == {} and report["languages"] == {}
