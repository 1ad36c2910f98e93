"""The `vocab` stage inside `langadapt run`: reads the data stage, writes the tokenizer folder and metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from langadapt.config import validate_config
from langadapt.data.corpus import eval_file, read_texts
from langadapt.errors import ConfigError, LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from langadapt.vocab.metrics import count_tokens
from langadapt.vocab.token_map import TokenMap
from tests.tiny import EU_DEV, EU_TRAIN


def _config(tmp_path: Path, base: Path, vocab: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "v", "output_dir": str(tmp_path / "run"), "target_language": "eu",
        "models": {"base": str(base)},
        "data": {
            "sources": {
                "basque": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu", "max_documents": 1500},
                "english": {"path": str(EU_TRAIN), "text_field": "en", "language": "en", "max_documents": 300},
            },
            "eval_sources": {
                "basque_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"},
                "english_dev": {"path": str(EU_DEV), "text_field": "en", "language": "en"},
            },
        },
        "vocab": vocab,
    }


def test_stage_builds_the_tokenizer_and_measures_every_eval_text(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    cfg = validate_config(_config(tmp_path, byte_level_tokenizer, {"method": "extended", "vocab_size": 1000}),
                          base_dir=tmp_path)
    run_pipeline(cfg)
    folder = tmp_path / "run" / "vocab" / "tokenizer"
    old, new = AutoTokenizer.from_pretrained(byte_level_tokenizer), AutoTokenizer.from_pretrained(folder)
    TokenMap.load(folder).check_base(old)
    metrics = RunStore(tmp_path / "run").manifest("vocab")["metrics"]
    assert metrics["build"]["sources"] == ["basque"] and metrics["build"]["corpus"]["documents"] == 1500
    dev = list(read_texts(eval_file(tmp_path / "run" / "data", "basque_dev")))
    shared = count_tokens(new, dev, reference=set(old.get_vocab())).summary(with_shared=True)
    assert metrics["eval"]["basque_dev"]["new"] == shared
    assert metrics["eval"]["basque_dev"]["original"] == count_tokens(old, dev).summary()
    summary = metrics["summary"]
    assert summary["vocab size"] == len(new) and summary["new tokens"] == len(new) - len(old)
    eu = metrics["eval"]["basque_dev"]
    assert (
        summary["basque_dev ×chars/tok"]
        == round(eu["new"]["chars_per_token"] / eu["original"]["chars_per_token"], 4)
        > 1.2
    )
    assert summary["english_dev ×chars/tok"] >= 1.0  # new merges after the originals: English never loses

    results = run_pipeline(cfg)
    assert [r.status for r in results] == ["skipped", "skipped"]


def test_optimized_stage_samples_english_sources(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    cfg = validate_config(
        _config(tmp_path, byte_level_tokenizer, {"method": "optimized", "vocab_size": 1000, "keep": 450,
                                                 "english_documents": 100}),
        base_dir=tmp_path,
    )
    run_pipeline(cfg)
    metrics = RunStore(tmp_path / "run").manifest("vocab")["metrics"]
    assert metrics["build"]["kept_original_tokens"] == 450


@pytest.mark.parametrize(
    ("vocab", "error", "needle"),
    [
        ({"method": "optimized"}, ConfigError, "needs 'keep'"),
        ({"method": "bpe", "keep": 10}, ConfigError, "only applies to method 'optimized'"),
        ({"sources": ["nope"]}, LangadaptError, "vocab.sources: nope — name sources of data.sources (basque, english)"),
        ({"methd": "bpe"}, ConfigError, "did you mean 'method'"),
        # keys that would be accepted and silently ignored
        ({"method": "bpe", "merges": "prepend"}, ConfigError, "'merges' only applies to method 'extended' or"),
        ({"method": "unigram", "merges": "append"}, ConfigError, "'merges' only applies"),
        ({"method": "extended", "english_sources": ["english"]}, ConfigError,
         "'english_sources' only applies to method 'optimized', not 'extended'"),
        ({"english_documents": 10}, ConfigError, "'english_documents' only applies to method 'optimized'"),
    ],
)
def test_bad_vocab_sections_fail_validation(tmp_path: Path, byte_level_tokenizer: Path, vocab: dict, error: type,
                                            needle: str) -> None:
    with pytest.raises(error) as raised:
        check(validate_config(_config(tmp_path, byte_level_tokenizer, vocab), base_dir=tmp_path))
    assert needle in str(raised.value)


def test_without_a_target_language_source_the_stage_says_what_to_set(
    tmp_path: Path, byte_level_tokenizer: Path
) -> None:
    data = _config(tmp_path, byte_level_tokenizer, {})
    data["target_language"] = "lt"
    with pytest.raises(LangadaptError, match="no data source has language 'lt'"):
        check(validate_config(data, base_dir=tmp_path))


def test_editing_the_base_tokenizer_rebuilds_the_vocabulary(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    base = Path(shutil.copytree(byte_level_tokenizer, tmp_path / "base"))
    cfg = validate_config(_config(tmp_path, base, {"vocab_size": 800}), base_dir=tmp_path)
    run_pipeline(cfg)
    (base / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert [(r.name, r.status) for r in run_pipeline(cfg)] == [("data", "skipped"), ("vocab", "ran")]
    assert ((tmp_path / "run" / "vocab" / "tokenizer" / "chat_template.jinja").read_text()
            == "{{ messages[0]['content'] }}")
