"""Extended tokenizers, token maps and resized models for the embedding/LEP tests.

The vocabulary stage builds the real Extended tokenizers; these tests need exact control over which
tokens are new and what they decompose into, so they append whole words to a copy of a tiny tokenizer
(`tokenizers` added tokens) and write the `TokenMap` by hand. `extended` builds a real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from langadapt.embeddings.config import CalibrationConfig, EmbedConfig
from langadapt.embeddings.registry import Corpus, InitInputs, ProbeTexts
from langadapt.embeddings.surgery import OUTPUT, embedding_matrices, resize_to_tokenizer
from langadapt.vocab.token_map import TokenMap, vocab_hash
from tests import tiny


def surface(tokenizer, word: str) -> str:
    """The word as the old tokenizer's model sees it: byte-level symbols, or Metaspace '▁' for spaces."""
    spec = tokenizer.backend_tokenizer.to_str()
    if '"ByteLevel"' in spec:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(word)[0][0]
    return word.replace(" ", "▁")


def decompose(tokenizer, word: str) -> list[int]:
    """Old-tokenizer ids of a word, from the tokenizer's own model (no normaliser, no dummy prefix)."""
    return [token.id for token in tokenizer.backend_tokenizer.model.tokenize(surface(tokenizer, word))]


def extend_with_words(
    tokenizer_dir: Path, words: list[str], out: Path, decompositions: dict[str, list[int]] | None = None
) -> tuple[Path, TokenMap]:
    """Append `words` as new tokens; their decompositions default to `decompose`. Writes token_map.json."""
    old = AutoTokenizer.from_pretrained(tokenizer_dir)
    new = AutoTokenizer.from_pretrained(tokenizer_dir)
    added = new.add_tokens(words)
    assert added == len(words), "every word must be new to the tokenizer"
    new.save_pretrained(out)
    n = len(old)
    decompositions = decompositions or {}
    token_map = TokenMap(
        method="extended",
        base_vocab_size=n,
        base_vocab_hash=vocab_hash(old),
        old_ids=[*range(n), *[-1] * len(words)],
        decompositions={n + i: decompositions.get(w, decompose(old, w)) for i, w in enumerate(words)},
    )
    token_map.save(out)
    return Path(out), token_map


def extended(model_dir: Path, out: Path) -> Path:
    """A real Extended tokenizer (vocab stage) of ~100 new Basque tokens over the tiny model's vocabulary."""
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary

    base = BaseTokenizer.load(str(model_dir))
    vocabulary = build_vocabulary(base, iter(tiny.texts("eu", limit=400)), method="extended", vocab_size=700)
    save_vocabulary(vocabulary, base, out)
    return out


def resized(model_dir: Path, tok_dir: Path, method: str | EmbedConfig, corpus: Corpus | None = None):
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    old = {k: v.clone() for k, v in embedding_matrices(model).items()}
    tokenizer, new_tokenizer = AutoTokenizer.from_pretrained(model_dir), AutoTokenizer.from_pretrained(tok_dir)
    token_map = TokenMap.load(tok_dir)
    metrics = resize_to_tokenizer(model, tokenizer, new_tokenizer, token_map, method, seed=0, corpus=corpus)
    return model, old, token_map, metrics


def texts_corpus(limit: int = 300, probe: ProbeTexts | None = None) -> Corpus:
    basque, english = tiny.texts("eu", limit=limit), tiny.texts("en", limit=limit)
    return Corpus(lambda: iter(basque), lambda: iter(english), probe)


@dataclass
class SharedShift:
    """An untied tiny model resized with the mean, without and with one shared-shift calibration."""

    plain: PreTrainedModel
    model: PreTrainedModel
    old: dict[str, torch.Tensor]
    token_map: TokenMap
    report: dict
    shift: torch.Tensor  # each new output row minus its uncalibrated value
    inputs: InitInputs  # what class_positions reads, with the original model


def shared_shift(model_dir: Path, tmp_path: Path, calibration: CalibrationConfig) -> SharedShift:
    """Resize and calibrate; asserts what every shared shift keeps: kept rows and the input side."""
    tok_dir = extended(model_dir, tmp_path / "tok")
    corpus = texts_corpus()
    plain, old, token_map, _ = resized(model_dir, tok_dir, "mean", corpus)
    model, _, _, metrics = resized(model_dir, tok_dir, EmbedConfig(method="mean", calibration=calibration), corpus)
    new = token_map.new_ids()
    before, after = plain.lm_head.weight.detach(), model.lm_head.weight.detach()
    assert torch.equal(after[: token_map.base_vocab_size], old[OUTPUT])
    assert torch.equal(model.get_input_embeddings().weight, plain.get_input_embeddings().weight)
    shift = after[new] - before[new]
    inputs = InitInputs(old, token_map, new_tokenizer=AutoTokenizer.from_pretrained(tok_dir), model=plain,
                        texts=corpus.texts, english=corpus.english)
    return SharedShift(plain, model, old, token_map, metrics["calibration"], shift, inputs)
