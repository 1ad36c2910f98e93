"""`langadapt vocab train` and `langadapt vocab stats` as a user runs them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from transformers import AutoTokenizer
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.errors import LangadaptError
from langadapt.vocab.token_map import TokenMap
from tests import tiny
from tests.test_cli import assert_one_line_error, langadapt


def _corpus(path: Path, texts: list[str], *, field: str = "eu", garbage: bool = False) -> Path:
    with gzip.open(path, "wb") as handle:
        for index, text in enumerate(texts):
            handle.write((json.dumps({field: text}, ensure_ascii=False) + "\n").encode("utf-8"))
            if garbage and index == 3:
                handle.write(b'{"eu": "bad \xff\xfe bytes"}\n')  # not UTF-8: skipped and counted
    return path


def test_train_writes_a_loadable_folder_with_map_and_manifest(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    corpus = _corpus(tmp_path / "eu.jsonl.gz", tiny.texts("eu", limit=800), garbage=True)
    out = tmp_path / "out" / "eu-tok"
    result = langadapt("vocab", "train", "--base", str(byte_level_tokenizer), "--corpus", str(corpus),
                       "--text-field", "eu", "--method", "extended", "--vocab-size", "900", "--out", str(out))
    assert result.returncode == 0, result.stderr
    tokenizer = AutoTokenizer.from_pretrained(out)
    token_map = TokenMap.load(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(tokenizer) == token_map.vocab_size == manifest["build"]["vocab_size"] > 600
    assert manifest["read"] == {"documents": 800, "invalid_utf8": 1, "invalid_json": 0, "missing_field": 0}
    assert manifest["method"] == "extended" and manifest["merges"] == "continue" and manifest["family"] == "byte_level"
    assert sorted(p.name for p in out.parent.iterdir()) == ["eu-tok"]  # no temp folder left beside it

    again = langadapt("vocab", "train", "--base", str(byte_level_tokenizer), "--corpus", str(corpus),
                      "--text-field", "eu", "--vocab-size", "900", "--out", str(out))
    assert_one_line_error(again, "already exists")

    stats_json = tmp_path / "stats.json"
    dev = _corpus(tmp_path / "dev.jsonl.gz", tiny.texts("eu", path=tiny.EU_DEV, limit=200))
    result = langadapt("vocab", "stats", "--tokenizer", f"base={byte_level_tokenizer}", "--tokenizer", str(out),
                       "--text", str(dev), "--field", "eu", "--json", str(stats_json))
    assert result.returncode == 0, result.stderr
    figures = json.loads(stats_json.read_text())
    assert list(figures["tokenizers"]) == ["base", str(out)]
    new = figures["tokenizers"][str(out)]
    for key in ("chars_per_token", "bytes_per_token", "tokens_per_word", "split_word_share", "unknown_rate",
                "shared_token_share", "overlap", "texts"):
        assert key in new, key
    assert new["chars_per_token"] > figures["tokenizers"]["base"]["chars_per_token"]
    assert new["overlap"]["share_of_reference"] == 1.0  # Extended keeps every original token


def test_bad_corpus_and_sizes_are_one_line_errors_and_write_nothing(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    blank = _corpus(tmp_path / "blank.jsonl.gz", ["", "   ", "\n\t"])
    real = _corpus(tmp_path / "eu.jsonl.gz", tiny.texts("eu", limit=50))
    train = ["vocab", "train", "--base", str(byte_level_tokenizer), "--out", str(tmp_path / "o")]
    cases = [
        (["--corpus", str(blank), "--text-field", "eu", "--vocab-size", "900"], ["holds no text", "3 documents"]),
        (["--corpus", str(real), "--text-field", "eu", "--vocab-size", "100"], ["smaller than the base's alphabet"]),
        (["--corpus", str(real), "--text-field", "eu", "--vocab-size", "900",
          "--method", "optimized", "--keep", "5000"],
         ["larger than the original vocabulary (600 tokens)"]),
        (["--corpus", str(real), "--vocab-size", "900"], ["has no field 'text'"]),
    ]
    assert_one_line_error(langadapt(*train, *cases[0][0]), *cases[0][1])  # the message as the shell shows it
    for args, needles in cases[1:]:
        result = CliRunner().invoke(app, [*train, *args])
        assert isinstance(result.exception, LangadaptError), result.output
        assert all(needle in str(result.exception) for needle in needles), str(result.exception)
    assert not (tmp_path / "o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.jsonl.gz", "eu.jsonl.gz"]
