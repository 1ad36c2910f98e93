"""Fixtures of the translation tests: real English-Basque pairs, a tiny random Marian model built on the spot,
and a config helper."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from langadapt.translate.config import TranslateConfig
from tests import tiny


def short_pairs(limit: int = 40) -> list[dict[str, str]]:
    """Real one-line en/eu pairs of the bundled LibreOffice help corpus (30-160 characters)."""
    pairs = [p for p in tiny.read_pairs(limit=3000) if 30 <= len(p["en"]) <= 160 and "\n" not in p["en"] + p["eu"]]
    unique = list({p["en"]: p for p in pairs}.values())
    return unique[:limit]


@pytest.fixture(scope="session")
def en_eu() -> dict[str, str]:
    return {p["en"]: p["eu"] for p in short_pairs()}


def settings(backend: dict, **values: object) -> TranslateConfig:
    return TranslateConfig.model_validate({"backend": backend, **values})


def make_tiny_marian(out: Path, *, multi_target: bool = False, seed: int = 0) -> Path:
    """A random Marian (opus-mt style) model: SentencePiece unigram on real en+eu text, d_model 32, 1+1 layers.
    `multi_target` adds `>>eus<<`/`>>lit<<` target tokens, like opus-mt-en-mul models."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    work = out.with_name(out.name + "-spm")
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.txt").write_text(
        "\n".join(tiny.texts("en", limit=300) + tiny.texts("eu", limit=300)), encoding="utf-8"
    )
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"), model_prefix=str(work / "sp"), vocab_size=400, model_type="unigram",
        character_coverage=1.0, minloglevel=2, eos_id=0, unk_id=1, bos_id=-1, pad_id=-1,
        user_defined_symbols=[">>eus<<", ">>lit<<"] if multi_target else [],
    )
    processor = spm.SentencePieceProcessor(model_file=str(work / "sp.model"))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    vocab["<pad>"] = len(vocab)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("source.spm", "target.spm"):
        shutil.copy(work / "sp.model", out / name)
    (out / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    shutil.rmtree(work)
    pair = {} if multi_target else {"source_lang": "en", "target_lang": "eu"}
    tokenizer = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                                vocab=str(out / "vocab.json"), **pair)
    config = MarianConfig(
        vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, forced_eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    MarianMTModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_marian(tmp_path_factory.mktemp("mt") / "marian-en-eu")


@pytest.fixture(scope="session")
def tiny_marian_multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_marian(tmp_path_factory.mktemp("mt") / "marian-en-mul", multi_target=True)


@pytest.fixture
def one_torch_thread():
    """Tiny models train many times slower with 2 threads when other processes share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
