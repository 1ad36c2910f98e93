"""`plan_run` on a tiny config equals the figures computed by hand; run records and variants are used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langadapt.config import validate_config
from langadapt.plan.core import PlanOptions, RunPlan, launch_scheme, plan_run, plan_variants
from tests.tiny import EU_TRAIN, REPO, read_pairs

TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 600,
        "tie_word_embeddings": False}
# Hand counts for TINY: per layer q 64·64 + k 64·32 + v 64·32 + o 64·64 + MLP 3·64·128 = 36,864 linear weights.
LINEAR, HEAD = 2 * 36_864, 600 * 64
N = 2 * (36_864 + 2 * 64) + 64 + 2 * HEAD  # layers + final norm + untied embeddings and head = 150,848
MATMUL = LINEAR + HEAD  # 112,128


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))  # no weights: plan never needs them
    return folder


def config(tmp_path: Path, model: Path, **sections: object) -> dict:
    data = {
        "name": "tiny", "output_dir": str(tmp_path / "run"), "target_language": "eu",
        "models": {"base": str(model)},
        "data": {"sources": {"basque": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu",
                                        "max_documents": 500},
                             "english": {"path": str(EU_TRAIN), "text_field": "en", "language": "en",
                                         "max_documents": 500}}},
        "pack": {"context_length": 128, "mix": {"basque": 0.8, "english": 0.2}},
        "cpt": {"mode": "full", "batch_size": 2, "gradient_accumulation_steps": 2},
    }
    data.update(sections)
    return data


def plan(data: dict, tmp_path: Path, *, gpu: str = "H100", mfu: float = 0.4) -> RunPlan:
    return plan_run(validate_config(data, base_dir=tmp_path), PlanOptions(gpu=gpu, mfu=mfu))


def words(field: str, limit: int = 500) -> int:
    return sum(len(r[field].split()) for r in read_pairs(EU_TRAIN, limit))


def test_tiny_full_cpt_figures_equal_the_hand_computation(tmp_path: Path, tiny_model: Path,
                                                          byte_level_tokenizer: Path) -> None:
    from tokenizers import Tokenizer

    data = config(tmp_path, tiny_model)
    data["models"]["tokenizer"] = str(byte_level_tokenizer)
    result = plan(data, tmp_path, gpu="H100", mfu=0.5)
    stages = {s.name: s for s in result.stages}

    tokenizer = Tokenizer.from_file(str(byte_level_tokenizer / "tokenizer.json"))
    rows = read_pairs(EU_TRAIN, 500)
    corpus = {}
    for name, field in (("basque", "eu"), ("english", "en")):
        sample = [r[field] for r in rows[:200]]  # tokens/word is measured on the first 200 documents
        tokens = sum(len(e.ids) for e in tokenizer.encode_batch(sample, add_special_tokens=False))
        corpus[name] = round(words(field) * tokens / sum(len(t.split()) for t in sample))
    assert stages["data"].tokens.value == corpus["basque"] + corpus["english"]
    packed = int(min(corpus["basque"] / 0.8, corpus["english"] / 0.2)) // 128 * 128
    assert stages["pack"].tokens.value == packed
    cpt = stages["cpt"]
    assert cpt.tokens.value == packed and (cpt.parameters, cpt.trained_parameters) == (N, N)

    per_token = 6 * MATMUL + 12 * 2 * 128 * 64  # 6·N_matmul + attention 12·layers·sequence·q_dim
    assert per_token == 869_376 and cpt.flops == per_token * packed == cpt.executed_flops
    assert cpt.wall_seconds == pytest.approx(per_token * packed / (989e12 * 0.5))

    row = cpt.memory[0]
    assert (row.scheme, row.devices, row.configured) == ("none", 1, True)
    assert (row.weights, row.gradients, row.optimizer) == (4 * N + 2 * MATMUL, 4 * N, 8 * N)
    layer = 30 * 64 + 4 * 32 + 8 * 128 + 4 * 4 + 8  # autocast, trained layer, per token
    head = 10 * 64 + 4 * 600 + 20
    tokens = 2 * 128
    saved = (2 * layer + head) * tokens + 2 * 128 * 16 * 4  # + the rotary cos/sin tables
    assert row.activations == saved + 6 * 600 * tokens  # + the loss's bf16 logits and their fp32 copy
    assert cpt.configured_memory == row.total


def test_embeddings_mode_checkpointing_and_a_hub_source(tmp_path: Path, tiny_model: Path) -> None:
    data = config(tmp_path, tiny_model)
    data["data"]["sources"]["english"] = {"path": "HuggingFaceFW/fineweb", "format": "hub", "language": "en"}
    data["cpt"] = {"mode": "embeddings", "batch_size": 2, "max_steps": 10, "gradient_checkpointing": True,
                   "launch": {"num_processes": 4, "config_file": str(REPO / "configs/accelerate/deepspeed-zero2.yaml")}}
    data["pack"]["total_tokens"] = 10_000
    cpt = {s.name: s for s in plan(data, tmp_path).stages}["cpt"]
    assert cpt.tokens.value == 10 * 2 * 4 * 128 and cpt.scheme == "zero2" and cpt.devices == 4
    per_token = 4 * MATMUL + 2 * HEAD + 12 * 2 * 128 * 64  # frozen body: no weight gradients but the head's
    recompute = 2 * MATMUL + 4 * 2 * 128 * 64
    assert cpt.flops == per_token * 10_240 and cpt.executed_flops == (per_token + recompute) * 10_240
    assert [r.scheme for r in cpt.memory] == ["none", "zero1", "zero2", "zero3", "fsdp"]
    zero2 = cpt.memory[2]
    assert zero2.configured and (zero2.gradients, zero2.optimizer) == (2 * 2 * HEAD // 4, 12 * 2 * HEAD // 4)

    del data["pack"]["total_tokens"]
    data["cpt"].pop("max_steps")
    unpriced = plan(data, tmp_path)
    stages = {s.name: s for s in unpriced.stages}
    assert stages["data"].tokens.value is None and "not read offline" in stages["data"].tokens.basis
    assert stages["cpt"].wall_seconds is None and unpriced.unknown == ["cpt"]


def test_run_records_replace_estimates_and_the_default_tokens_per_word_is_labelled(tmp_path: Path,
                                                                                tiny_model: Path) -> None:
    data = config(tmp_path, tiny_model)
    estimated = {s.name: s for s in plan(data, tmp_path).stages}
    assert "assumed 2.0 tokens/word" in estimated["data"].tokens.basis  # the tiny folder has no tokenizer
    assert estimated["data"].tokens.value == round(2.0 * words("eu")) + round(2.0 * words("en"))

    data_dir = tmp_path / "run" / "data"
    data_dir.mkdir(parents=True)
    (data_dir / "manifest.json").write_text(json.dumps({"status": "complete", "metrics": {
        "sources": {"basque": {"tokens": 80_000}, "english": {"tokens": 50_000}}}}))
    stages = {s.name: s for s in plan(data, tmp_path).stages}
    assert stages["data"].tokens.value == 130_000 and stages["pack"].tokens.value == 100_000 // 128 * 128
    assert "data stage's count" in stages["data"].tokens.basis
    (data_dir / "manifest.json").write_text(json.dumps({"status": "complete", "metrics": {"sources": {
        "basque": {"tokens": 80_000, "documents": 900, "tokens_estimated_from": 57}, "english": {"tokens": 50_000}}}}))
    stages = {s.name: s for s in plan(data, tmp_path).stages}  # data.token_count_every > 1: an estimate, said so
    assert stages["data"].tokens.value == 130_000
    assert "basque: data stage's estimate from 57 of 900 documents" in stages["data"].tokens.basis
    pack_dir = tmp_path / "run" / "pack"
    pack_dir.mkdir()
    (pack_dir / "manifest.json").write_text(json.dumps({"status": "complete", "metrics": {"blocks": 7}}))
    assert {s.name: s for s in plan(data, tmp_path).stages}["cpt"].tokens.value == 7 * 128


def test_sft_and_dpo_count_their_files_and_variants_sum(tmp_path: Path, tiny_model: Path) -> None:
    data = config(tmp_path, tiny_model, vocab={"method": "extended", "vocab_size": 400})
    data["sft"] = {"data": [str(REPO / "examples/data/eu/instructions.jsonl")], "max_length": 64, "epochs": 2}
    data["dpo"] = {"data": [str(REPO / "examples/data/eu/preferences.jsonl")], "max_length": 64}
    first = plan(data, tmp_path)
    stages = {s.name: s for s in first.stages}
    assert stages["cpt"].parameters == N + 2 * 400 * 64  # vocab ≤ 600 + 400 before the vocab stage ran
    assert "upper bound" in stages["cpt"].architecture
    sft, dpo = stages["sft"], stages["dpo"]
    assert sft.mode == "lora" and "2 epoch(s) × 32 examples" in sft.tokens.basis
    assert "1 epoch(s) × 20 examples × 2 sequence(s)" in dpo.tokens.basis
    # vocab changed, so lora.train_embeddings 'auto' trains the embeddings and head (and PEFT copies them)
    assert sft.trained_parameters == 2 * 1000 * 64 + 2 * 16 * (2 * (64 + 64) + 2 * (64 + 32) + 3 * (64 + 128))

    other = validate_config({**data, "name": "other", "cpt": {**data["cpt"], "max_steps": 5}}, base_dir=tmp_path)
    both = plan_variants([validate_config(data, base_dir=tmp_path), other], PlanOptions())
    assert [v["run"] for v in both["variants"]] == ["tiny", "other"]
    assert both["total"]["flops"] == sum(v["total"]["flops"] for v in both["variants"])
    assert both["total"]["flops"] == first.flops + plan_run(other, PlanOptions()).flops


def test_launch_files_name_their_sharding() -> None:
    folder = REPO / "configs" / "accelerate"
    assert [launch_scheme(folder / f) for f in ("ddp.yaml", "deepspeed-zero2.yaml", "deepspeed-zero3.yaml",
                                                "fsdp.yaml")] == ["none", "zero2", "zero3", "fsdp"]
    assert launch_scheme(None) == "none"
