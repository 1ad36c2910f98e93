"""Architectures come from config.json only: shipped family configs, local folders, an explicit file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from langadapt.errors import LangadaptError
from langadapt.plan.architecture import SHIPPED, Architecture, find_architecture, shipped_family

# Published parameter counts of the shipped families (model cards), to the parameter.
PUBLISHED = {"llama-2-7b": 6_738_415_616, "llama-3-8b": 8_030_261_248, "mistral-7b-v0.1": 7_241_732_096,
             "qwen2.5-0.5b": 494_032_768, "qwen2.5-7b": 7_615_616_512, "smollm2-135m": 134_515_008}


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.json")), ids=lambda p: p.stem)
def test_parameter_count_equals_transformers_on_the_meta_device(path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**json.loads(path.read_text())))
    expected = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())  # tied counted once
    arch = find_architecture("unused", model_config=path)
    assert arch.parameters == expected
    linear = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                 for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "layers." in name)
    assert arch.layers * arch.layer_linear_params == linear
    if path.stem in PUBLISHED:
        assert arch.parameters == PUBLISHED[path.stem]


@pytest.mark.parametrize(("ref", "family"), [
    ("meta-llama/Meta-Llama-3-8B", "llama-3-8b"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
    ("meta-llama/Llama-3.1-8B", "llama-3.1-8b"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
    ("meta-llama/Llama-2-13b-chat-hf", "llama-2-13b"),
    ("mistralai/Mistral-7B-v0.1", "mistral-7b-v0.1"),
    ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"),
    ("Qwen/Qwen2.5-1.5B-Instruct", "qwen2.5-1.5b"),
    ("HuggingFaceTB/SmolLM2-360M", "smollm2-360m"),
    ("openchat/openchat-3.5-0106", None),
])
def test_hub_ids_map_to_shipped_families(ref: str, family: str | None) -> None:
    assert shipped_family(ref) == family


def test_builtin_uses_the_shipped_smollm2_config_which_matches_the_materialised_model() -> None:
    arch = find_architecture("builtin:smollm2-135m-instruct")
    assert (arch.hidden, arch.layers, arch.heads, arch.kv_heads, arch.vocab, arch.tied) == (576, 30, 9, 3, 49152, True)
    assert "shipped smollm2-135m" in arch.source


def test_a_local_folder_is_read_and_an_explicit_config_wins(tmp_path: Path) -> None:
    config = json.loads((SHIPPED / "qwen2.5-0.5b.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    local = find_architecture(str(tmp_path))
    assert local.vocab == 1000 and local.qkv_bias and local.tied
    explicit = find_architecture(str(tmp_path), model_config=SHIPPED / "llama-2-7b.json")
    assert explicit.vocab == 32000 and not explicit.tied


def test_an_unreadable_model_is_one_line_naming_it_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LangadaptError) as err:
        find_architecture("openchat/openchat-3.5-0106")
    message = str(err.value)
    assert "openchat/openchat-3.5-0106" in message and "--model-config PATH" in message and "\n" not in message
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(LangadaptError, match="not valid JSON"):
        find_architecture(str(tmp_path))
    bad.write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    with pytest.raises(LangadaptError, match="model_type 'gpt2' is not one plan can size"):
        find_architecture(str(tmp_path))


def test_with_vocab_changes_only_the_embeddings() -> None:
    arch = find_architecture("x", model_config=SHIPPED / "llama-3-8b.json")
    bigger = arch.with_vocab(174_816, "Extended")
    assert bigger.parameters - arch.parameters == 2 * (174_816 - 128_256) * 4096
    assert isinstance(bigger, Architecture) and "Extended" in bigger.source
