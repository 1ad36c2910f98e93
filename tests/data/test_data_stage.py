"""The `data` and `pack` stages inside `langadapt run`: files, manifests, reuse, the vocab stage's tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from langadapt.config import validate_config
from langadapt.data.corpus import corpus_file, eval_file, read_texts
from langadapt.data.steps import FILTER_BATCH
from langadapt.errors import LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from tests.tiny import EU_DEV, EU_TRAIN


def config(tmp_path: Path, base: Path, **sections: Any) -> dict[str, Any]:
    return {
        "name": "d", "output_dir": str(tmp_path / "run"), "target_language": "eu", "seed": 5,
        "models": {"base": str(base)},
        "data": {
            "sources": {
                "basque": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu", "max_documents": 1200},
                "english": {"path": str(EU_TRAIN), "text_field": "en", "language": "en", "max_documents": 300},
            },
            "eval_sources": {"basque_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"}},
        },
        **sections,
    }


def test_data_stage_writes_the_clean_corpus_and_exact_statistics(tmp_path: Path, tiny_llama: Path) -> None:
    cfg = validate_config(config(tmp_path, tiny_llama), base_dir=tmp_path)
    run_pipeline(cfg)
    data_dir = tmp_path / "run" / "data"
    metrics = RunStore(tmp_path / "run").manifest("data")["metrics"]
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    for name in ("basque", "english"):
        kept = list(read_texts(corpus_file(data_dir, name)))
        stats = metrics["sources"][name]
        assert stats["documents"] == len(kept) == (1200 if name == "basque" else 300)
        assert stats["read"] == stats["documents"] + sum(stats["removed"].values())
        assert stats["tokens"] == sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in kept)
        assert stats["words"] == sum(len(t.split()) for t in kept)
        assert stats["removed"]["exact_duplicate"] > 0 and stats["removed"]["min_chars"] > 0
    assert (
        len(list(read_texts(eval_file(data_dir, "basque_dev")))) == metrics["eval"]["basque_dev"]["documents"] == 1022
    )
    assert metrics["langid_languages"] == ["en", "eu"]
    assert metrics["summary"]["documents"] == 1500 and metrics["summary"]["basque tok/word"] > 2


def test_pack_stage_mixes_by_tokens_and_is_reused(tmp_path: Path, tiny_llama: Path) -> None:
    pack = {"context_length": 128, "mix": {"basque": 0.8, "english": 0.2}, "total_tokens": 30_000,
            "cache_dir": str(tmp_path / "cache")}
    cfg = validate_config(config(tmp_path, tiny_llama, pack=pack), base_dir=tmp_path)
    run_pipeline(cfg)
    store = RunStore(tmp_path / "run")
    metrics = store.manifest("pack")["metrics"]
    mix = metrics["mix"]
    assert mix["requested_token_share"] == {"basque": 0.8, "english": 0.2}
    for name, share in mix["requested_token_share"].items():
        assert abs(mix["achieved_token_share"][name] - share) < 1e-4  # the issue asks for ±1 %
    assert set(mix["repeats"]) == {"basque", "english"} and metrics["packing_efficiency"] == 1.0
    data = load_from_disk(str(tmp_path / "run" / "pack" / "dataset"))
    assert len(data) == metrics["blocks"] == 30_000 // 128
    assert {len(row) for row in data["input_ids"]} == {128} == {len(row) for row in data["position_ids"]}
    assert metrics["cache"] == {"basque": "miss", "english": "miss"}

    # a new mix re-packs without re-cleaning, from the tokenised cache
    cfg.pack.mix = {"basque": 0.5, "english": 0.5}
    results = {r.name: r.status for r in run_pipeline(cfg)}
    assert results == {"data": "skipped", "pack": "ran"}
    assert store.manifest("pack")["metrics"]["cache"] == {"basque": "hit", "english": "hit"}


def test_pack_uses_the_vocab_stage_tokenizer(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    pack = {"context_length": 64, "mix": {"basque": 0.8, "english": 0.2}, "cache_dir": str(tmp_path / "cache")}
    cfg = validate_config(config(tmp_path, byte_level_tokenizer, vocab={"method": "extended", "vocab_size": 900},
                                 pack=pack), base_dir=tmp_path)
    run_pipeline(cfg)
    metrics = RunStore(tmp_path / "run").manifest("pack")["metrics"]
    assert metrics["tokenizer"] == "vocab/tokenizer"
    ids = np.array(load_from_disk(str(tmp_path / "run" / "pack" / "dataset"))["input_ids"])
    base_size = len(AutoTokenizer.from_pretrained(byte_level_tokenizer))
    assert ids.max() >= base_size  # the new Basque tokens are in the training data
    assert ids.max() < len(AutoTokenizer.from_pretrained(tmp_path / "run" / "vocab" / "tokenizer"))


@pytest.mark.parametrize(
    ("pack", "needle"),
    [
        ({"mix": {"basque": 0.8, "wiki": 0.2}}, "pack.mix names wiki, which data.sources lacks (basque, english)"),
        ({"mix": {"basque": 1.0}}, "pack.mix leaves out english — give every data source a share (0 leaves it out)"),
    ],
)
def test_pack_preflight(tmp_path: Path, tiny_llama: Path, pack: dict, needle: str) -> None:
    cfg = validate_config(config(tmp_path, tiny_llama, pack=pack), base_dir=tmp_path)
    with pytest.raises(LangadaptError) as error:
        check(cfg)
    assert needle in str(error.value)


def test_pack_needs_the_data_it_asks_for(tmp_path: Path, tiny_llama: Path) -> None:
    pack = {"context_length": 128, "mix": {"basque": 0.5, "english": 0.5}, "total_tokens": 200_000,
            "cache_dir": str(tmp_path / "cache")}
    cfg = validate_config(config(tmp_path, tiny_llama, pack=pack), base_dir=tmp_path)
    with pytest.raises(
        LangadaptError, match=r"source 'english' has [\d,]+ tokens but the mix asks for 99,968 .* repeats"
    ):
        run_pipeline(cfg)
    assert not (tmp_path / "run" / "pack").exists() and (tmp_path / "run" / "data").exists()


def test_validate_catches_the_english_side_before_the_run(tmp_path: Path, tiny_llama: Path) -> None:
    raw = config(tmp_path, tiny_llama)
    raw["data"]["sources"]["basque"]["text_field"] = "en"
    cfg = validate_config(raw, base_dir=tmp_path)
    with pytest.raises(
        LangadaptError,
        match=r"data source 'basque': language ID removed (9\d|100)% of the first \d+ documents "
        r"\(detected: en \d+.*check data.sources.basque.text_field \('en'\)",
    ):
        check(cfg)
    assert not (tmp_path / "run").exists()


def test_the_manifest_reports_throughput_per_step(tmp_path: Path, tiny_llama: Path) -> None:
    cfg = validate_config(config(tmp_path, tiny_llama), base_dir=tmp_path)
    run_pipeline(cfg)
    metrics = RunStore(tmp_path / "run").manifest("data")["metrics"]
    speed = metrics["throughput"]
    assert speed["mb_per_s"] > 0 and speed["docs_per_s"] > 0 and speed["workers"] >= 1
    assert set(speed["phases"]) == {"process", "buckets", "clusters", "write"}
    steps = speed["steps"]
    assert {"process/read", "process/quality", "process/language", "process/survivors", "write/corpus"} <= set(steps)
    read = sum(s["read"] for s in (*metrics["sources"].values(), *metrics["eval"].values()))
    # the two capped sources stop mid-batch: each reader read ahead by the rest of one language batch (up to
    # FILTER_BATCH documents after quality filtering, more before it) and of one quality batch; ~650 here
    assert 0 <= steps["process/read"]["documents"] - read < 2 * 2 * FILTER_BATCH
    assert steps["process/language"]["mb_per_s"] > 0
    assert metrics["summary"]["MB/s"] == speed["mb_per_s"]
