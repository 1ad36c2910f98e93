"""The shared fixtures are what they claim to be: later issues build on them."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests import tiny

MIXED = "Kaixo mundua! Testu-koadroa 😀 x_1 = f(y) — Привет, 日本語 \t tab\n  two spaces"


def test_byte_level_tokenizer_round_trips_and_is_byte_level(byte_level_tokenizer: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(byte_level_tokenizer)
    spec = json.loads((byte_level_tokenizer / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE"
    assert spec["pre_tokenizer"]["type"] == "ByteLevel"
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tokenizer.decode(tokenizer.encode(MIXED, add_special_tokens=False)) == MIXED
    assert tokenizer.chat_template


def test_sentencepiece_tokenizer_uses_metaspace_and_byte_fallback(sentencepiece_tokenizer: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(sentencepiece_tokenizer)
    spec = json.loads((sentencepiece_tokenizer / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"] is True
    assert spec["pre_tokenizer"]["type"] == "Metaspace"
    assert "<0xF0>" in spec["model"]["vocab"]  # byte pieces exist for characters never seen in training
    ids = tokenizer.encode("日本語", add_special_tokens=False)
    assert all(tokenizer.convert_ids_to_tokens(i).startswith(("<0x", "▁")) for i in ids)
    assert tokenizer.decode(tokenizer.encode("Kaixo 😀 mundua", add_special_tokens=False)) == "Kaixo 😀 mundua"


def test_tiny_models_match_their_declared_tying(tiny_model: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    config = model.config
    assert config.hidden_size <= 64 and config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    shared = model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert shared == bool(config.tie_word_embeddings)
    logits = model(torch.tensor([[1, 5, 7]])).logits
    assert logits.shape == (1, 3, len(tokenizer)) and torch.isfinite(logits).all()


def test_instruct_sibling_answers_with_its_pattern_and_base_does_not(tiny_instruct_pair) -> None:
    prompt = tiny.texts("eu", path=tiny.EU_DEV, limit=3)[2][:60]  # unseen during the sibling's training
    assert tiny.greedy_reply(tiny_instruct_pair.instruct, prompt) == tiny_instruct_pair.reply
    assert tiny.greedy_reply(tiny_instruct_pair.base, prompt) != tiny_instruct_pair.reply
    base = AutoModelForCausalLM.from_pretrained(tiny_instruct_pair.base)
    sibling = AutoModelForCausalLM.from_pretrained(tiny_instruct_pair.instruct)
    assert base.config.to_dict()["vocab_size"] == sibling.config.to_dict()["vocab_size"]
    assert not torch.equal(base.model.layers[0].mlp.up_proj.weight, sibling.model.layers[0].mlp.up_proj.weight)
