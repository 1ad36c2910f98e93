"""Ingest: every document is either kept or counted against exactly one check; culprits are named."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from langadapt.data.config import DataConfig
from langadapt.data.corpus import corpus_file, eval_file, read_texts
from langadapt.data.ingest import ingest_corpus
from langadapt.errors import LangadaptError


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


def data_config(**sources: dict) -> DataConfig:
    eval_sources = sources.pop("eval_sources", {})
    return DataConfig(sources=sources, eval_sources=eval_sources)


def test_counts_add_up_and_wrong_language_goes(
    tmp_path: Path, basque_texts: list[str], english_texts: list[str]
) -> None:
    english = [t for t in english_texts if len(t.split()) >= 10][:40]
    texts = basque_texts[:400] + english + basque_texts[:50]  # English intruders and 50 exact repeats
    cfg = data_config(eu={"path": str(write_jsonl(tmp_path / "eu.jsonl", texts)), "language": "eu"})
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=tmp_path / "out")["sources"]["eu"]
    assert report["read"] == len(texts)
    assert report["read"] == report["documents"] + sum(report["removed"].values())
    assert report["removed"]["language"] >= 38  # the detectors miss at most a couple of the English paragraphs
    assert report["removed"]["exact_duplicate"] >= 50
    assert report["languages"]["en"] >= 38 and report["languages"]["eu"] > 250
    assert sum(report["language_id"].values()) == sum(report["languages"].values())  # fastText + lingua
    assert report["duplicates"] == report["removed"]["exact_duplicate"] + report["removed"].get("near_duplicate", 0)
    kept = list(read_texts(corpus_file(tmp_path / "out", "eu")))
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
    assert list(read_texts(eval_file(out, "dev"))) == dev  # whitespace repaired, the blank text dropped
    assert report["eval"]["dev"]["removed"] == {"empty": 1} and report["eval"]["dev"]["normalized"] == 21
    assert report["sources"]["eu"]["removed"]["eval_overlap"] >= 20
    assert not {t.casefold() for t in read_texts(corpus_file(out, "eu"))} & {d.casefold() for d in dev}


@pytest.mark.parametrize(
    ("texts", "source", "needle"),
    [
        (["Laguntza", "Soila", "Tarteak"], {},
         "all 3 documents were removed — 'min_chars' removed 3 — lower data.clean.min_chars"),
        (["This paragraph is plainly written in English, not Basque."] * 2 + ["Soila"], {"language": "eu"},
         "language ID removed 100% of its 2 documents (detected: en 2) — the text is not 'eu': check "
         "data.sources.src.text_field ('text') and language ('eu')"),
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


def without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("throughput", "shards")}


def test_same_documents_and_bytes_for_any_worker_count_and_shard_size(tmp_path: Path, basque_texts: list[str],
                                                                       english_texts: list[str]) -> None:
    words = [f"hitza{i}" for i in range(60)]
    near = [" ".join(words), " ".join([*words[:59], "aldatuta"])]  # a near-duplicate pair
    eu = write_jsonl(tmp_path / "eu.jsonl", basque_texts[:900] + near + basque_texts[:100])
    eu = eu.with_suffix(".jsonl.gz")  # its pieces go through parked gzip readers
    eu.write_bytes(gzip.compress((tmp_path / "eu.jsonl").read_bytes(), mtime=0))
    en = write_jsonl(tmp_path / "en.jsonl", english_texts[:300] + basque_texts[850:870])  # Basque intruders
    dev = write_jsonl(tmp_path / "dev.jsonl", basque_texts[880:890])
    results = []
    for i, executor in enumerate(({"workers": 1, "shard_mb": 0.02}, {"workers": 2, "shard_mb": 0.02}, {"workers": 2})):
        cfg = DataConfig(sources={"eu": {"path": str(eu), "language": "eu"}, "en": {"path": str(en), "language": "en"}},
                         eval_sources={"dev": {"path": str(dev), "language": "eu"}}, executor=executor)
        out = tmp_path / f"out{i}"
        report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=out)
        files = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.gz"))}
        results.append((without_timing(report), files, report["shards"]))
    (one, files_one, shards_one), (two, files_two, _), (coarse, files_coarse, shards_coarse) = results
    assert one == two and files_one == files_two  # same shards, any workers: the same bytes
    assert shards_one > 2 * shards_coarse and coarse == one  # other shards: the same documents and counts
    assert {k: gzip.decompress(v) for k, v in files_coarse.items()} == {
        k: gzip.decompress(v) for k, v in files_one.items()
    }
    eu_report = one["sources"]["eu"]
    assert eu_report["removed"]["near_duplicate"] >= 1 and eu_report["removed"]["eval_overlap"] >= 5
    assert one["sources"]["en"]["removed"]["exact_duplicate"] >= 15  # cross-source: the Basque copies go


def test_unreadable_documents_are_counted_as_removed(tmp_path: Path, basque_texts: list[str]) -> None:
    good = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in basque_texts[:50]).encode()
    path = tmp_path / "s.jsonl"
    path.write_bytes(good + b'{"text": "bad \xff byte"}\nnot json\n{"other": 1}\n')
    cfg = DataConfig(sources={"s": {"path": str(path), "language": "eu"}})
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None)["sources"]["s"]
    assert (report["invalid_utf8"], report["invalid_json"], report["missing_field"]) == (1, 1, 1)
    assert report["removed"]["invalid_utf8"] == 1 and report["read"] == 53
    assert report["read"] == report["documents"] + sum(report["removed"].values())


def test_the_english_side_stops_the_stage_in_one_line(tmp_path: Path) -> None:
    from tests.tiny import EU_TRAIN

    cfg = DataConfig(
        sources={"eu": {"path": str(EU_TRAIN), "text_field": "en", "language": "eu", "max_documents": 400}}
    )
    with pytest.raises(LangadaptError) as error:
        ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and message.startswith("data source 'eu': language ID removed 100% of its ")
    assert "(detected: en " in message and "check data.sources.eu.text_field ('en') and language ('eu')" in message
    assert not (tmp_path / "out").exists()


def test_token_count_every_k_samples_training_shards_and_counts_eval_texts(
    tmp_path: Path, basque_texts: list[str], byte_level_tokenizer: Path
) -> None:
    from transformers import AutoTokenizer

    from langadapt.data.stats import token_count

    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    train = write_jsonl(tmp_path / "train.jsonl", basque_texts[:500])  # one shard
    dev = write_jsonl(tmp_path / "dev.jsonl", basque_texts[1900:1950])
    reports = {}
    for every in (1, 5):
        cfg = DataConfig(sources={"eu": {"path": str(train), "language": "eu"}},
                         eval_sources={"dev": {"path": str(dev), "language": "eu"}}, token_count_every=every)
        out = tmp_path / f"out{every}"
        reports[every] = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=tokenizer, out=out)
        reports[every]["files"] = {p.name: p.read_bytes() for p in sorted(out.rglob("*.gz"))}
    exact, sampled = reports[1], reports[5]
    assert exact["files"] == sampled["files"]  # the corpus does not depend on how tokens are counted
    kept = list(read_texts(corpus_file(tmp_path / "out5", "eu")))
    sample = kept[::5]
    eu = sampled["sources"]["eu"]
    assert eu["tokens_estimated_from"] == len(sample)
    assert eu["tokens"] == round(token_count(tokenizer, sample) * sum(map(len, kept)) / sum(map(len, sample)))
    assert exact["sources"]["eu"]["tokens"] == token_count(tokenizer, kept)
    assert "tokens_estimated_from" not in exact["sources"]["eu"]
    assert sampled["eval"]["dev"] == exact["eval"]["dev"] and "tokens_estimated_from" not in sampled["eval"]["dev"]
    for key in ("documents", "characters", "words"):
        assert eu[key] == exact["sources"]["eu"][key]


def test_the_work_folders_size_is_reported(tmp_path: Path, basque_texts: list[str]) -> None:
    cfg = data_config(eu={"path": str(write_jsonl(tmp_path / "eu.jsonl", basque_texts[:600])), "language": "eu"})
    work = tmp_path / "work"
    report = ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, work=work)
    on_disk = sum(path.stat().st_size for path in work.rglob("*") if path.is_file())
    assert report["throughput"]["work_mb"] == round(on_disk / 1e6, 3)
    signed = sum(path.stat().st_size for path in (work / "exact").rglob("*.minhash.sig")) // 12  # a record each
    band_bytes = sum(path.stat().st_size for path in (work / "minhash").rglob("*.minhash.sig"))
    assert signed > 400 and band_bytes == 9 * 12 * signed  # 9 bands of 12-byte records: 108 bytes a document
