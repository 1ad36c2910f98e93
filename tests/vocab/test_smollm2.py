"""The real SmolLM2 tokenizer and Basque text: why new merges go after the originals, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from langadapt.vocab.base import BaseTokenizer
from langadapt.vocab.build import Vocabulary, build_vocabulary, save_vocabulary
from tests import tiny
from tests.test_cli import langadapt

pytestmark = pytest.mark.smollm2


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path) -> BaseTokenizer:
    return BaseTokenizer.from_hf(AutoTokenizer.from_pretrained(smollm2_dir))


@pytest.fixture(scope="module")
def extended(smollm2: BaseTokenizer) -> dict[str, Vocabulary]:
    return {merges: build_vocabulary(smollm2, iter(tiny.texts("eu")), method="extended", vocab_size=4000, merges=merges)
            for merges in ("continue", "prepend")}


def _english_dev_words(base: BaseTokenizer) -> set[str]:
    splitter = base.word_splitter().pre_tokenizer
    return {w for text in tiny.texts("en", path=tiny.EU_DEV, limit=None) for w, _ in splitter.pre_tokenize_str(text)}


def test_target_merges_first_resplit_english_words_and_continued_merges_never_do(smollm2, extended) -> None:
    old = smollm2.parts.model
    models = {name: smollm2.with_model(v.spec["model"]).model for name, v in extended.items()}
    resplit = {name: [w for w in _english_dev_words(smollm2) if len(model.tokenize(w)) > len(old.tokenize(w))]
               for name, model in models.items()}
    assert resplit["continue"] == []
    assert len(resplit["prepend"]) >= 10  # e.g. "Charts": Ch|arts -> C|har|ts (docs/benchmarks.md)


def test_byte_symbols_smollm2_lacks_are_added_with_the_empty_decomposition_marker(smollm2, extended, tmp_path) -> None:
    vocabulary = extended["continue"]
    missing = [c for c in smollm2.alphabet() if c not in smollm2.parts.vocab]
    assert len(missing) == 21  # bytes 0x04, 0xC0, 0xF5-0xFF, ...
    new_vocab = vocabulary.spec["model"]["vocab"]
    assert vocabulary.token_map.undecomposable_ids() == sorted(new_vocab[c] for c in missing)
    new = save_vocabulary(vocabulary, smollm2, tmp_path / "tok")
    text = "a\x04b"  # SmolLM2 silently drops the control byte; the extended tokenizer keeps it
    assert smollm2.hf.decode(smollm2.hf(text, add_special_tokens=False)["input_ids"]) == "ab"
    assert new.decode(new(text, add_special_tokens=False)["input_ids"]) == text


def test_cli_trains_and_measures_on_the_real_tokenizer(tmp_path: Path, smollm2_dir: Path) -> None:
    out = tmp_path / "eu-extended"
    result = langadapt("vocab", "train", "--base", "builtin:smollm2-135m-instruct", "--corpus", str(tiny.EU_TRAIN),
                       "--text-field", "eu", "--method", "extended", "--vocab-size", "4000", "--max-documents", "3000",
                       "--out", str(out))
    assert result.returncode == 0, result.stderr
    stats = tmp_path / "stats.json"
    result = langadapt("vocab", "stats", "--tokenizer", "smollm2=builtin:smollm2-135m-instruct", "--tokenizer",
                       f"extended={out}", "--text", str(tiny.EU_DEV), "--field", "eu", "--json", str(stats))
    assert result.returncode == 0, result.stderr
    figures = json.loads(stats.read_text())["tokenizers"]
    assert figures["smollm2"]["tokens_per_word"] > 3.0  # 3.48 on this text
    assert figures["extended"]["chars_per_token"] > 1.5 * figures["smollm2"]["chars_per_token"]
