"""The data stage writes the corpus and exact statistics under the model's tokenizer."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from langadapt.config import validate_config
from langadapt.data.corpus import corpus_file, eval_file, read_texts
from langadapt.pipeline import run_pipeline
from langadapt.runstore import RunStore
from tests.tiny import EU_DEV, texts


def test_data_stage_copies_sources_and_counts_exactly(tmp_path: Path, tiny_llama: Path) -> None:
    cfg = validate_config(
        {
            "name": "d", "output_dir": str(tmp_path / "run"), "target_language": "eu",
            "models": {"base": str(tiny_llama)},
            "data": {
                "sources": {"eu": {"path": str(EU_DEV), "text_field": "eu", "max_documents": 100}},
                "eval_sources": {"en_dev": {"path": str(EU_DEV), "text_field": "en", "language": "en"}},
            },
        },
        base_dir=tmp_path,
    )
    run_pipeline(cfg)
    data_dir = tmp_path / "run" / "data"
    expected = texts("eu", path=EU_DEV, limit=100)
    assert list(read_texts(corpus_file(data_dir, "eu"))) == expected
    assert len(list(read_texts(eval_file(data_dir, "en_dev")))) == 1022

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in expected)
    words = sum(len(t.split()) for t in expected)
    metrics = RunStore(tmp_path / "run").manifest("data")["metrics"]
    stats = metrics["sources"]["eu"]
    assert stats["documents"] == 100 and stats["tokens"] == tokens and stats["words"] == words
    assert stats["characters"] == sum(len(t) for t in expected)
    assert stats["tokens_per_word"] == round(tokens / words, 4)
    assert metrics["summary"]["eu tok/word"] == stats["tokens_per_word"]
