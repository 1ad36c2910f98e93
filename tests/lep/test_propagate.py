"""LEP recovers a known linear map exactly, keeps I's body and chat rows, and refuses mismatched models."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from langadapt.embeddings.surgery import INPUT, embed_model, embedding_matrices
from langadapt.errors import LangadaptError
from langadapt.lep.propagate import check_inputs, lep_model, propagation_map
from langadapt.vocab.token_map import TokenMap
from tests.embeddings.helpers import decompose, extend_with_words

NEW_WORDS = ["Kaixoñ", "mundua", "euskara", "testu-koadroa", "Ezabatu", "aukeratu"]


@dataclass(frozen=True)
class Trio:
    """B, I = B with embeddings·R (and a changed body), D = B extended + init + perturbed rows (float64)."""

    base: Path
    instruct: Path
    donor: Path
    maps: dict[str, torch.Tensor]  # matrix name -> R


def save(model, tokenizer_dir: Path, out: Path) -> Path:
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


def random_invertible(dim: int, generator: torch.Generator) -> torch.Tensor:
    return torch.eye(dim, dtype=torch.float64) + 0.1 * torch.randn(dim, dim, generator=generator, dtype=torch.float64)


def make_trio(model_dir: Path, root: Path, seed: int = 0) -> Trio:
    generator = torch.Generator().manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64)
    base_dir = save(base, model_dir, root / "base")

    instruct = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float64)
    maps = {}
    with torch.no_grad():
        for name, weight in embedding_matrices(instruct).items():
            maps[name] = random_invertible(weight.shape[1], generator)
            weight.copy_(weight @ maps[name])
        instruct.model.layers[0].mlp.up_proj.weight.add_(0.01)  # a body of its own
    instruct_dir = save(instruct, model_dir, root / "instruct")

    tokenizer_dir, _ = extend_with_words(base_dir, NEW_WORDS, root / "tokenizer")
    embed_model(base_dir, tokenizer_dir, root / "embedded")
    donor = AutoModelForCausalLM.from_pretrained(root / "embedded", dtype=torch.float64)
    with torch.no_grad():  # stands in for CPT: every row moves
        for weight in embedding_matrices(donor).values():
            weight.add_(0.01 * torch.randn(weight.shape, generator=generator, dtype=torch.float64))
    donor_dir = save(donor, root / "embedded", root / "donor")
    shutil.copy(root / "embedded" / "token_map.json", donor_dir / "token_map.json")
    return Trio(base_dir, instruct_dir, donor_dir, maps)


@pytest.fixture(scope="module")
def trio(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Trio:
    return make_trio(tiny_model, tmp_path_factory.mktemp("trio"))


def load(folder: Path):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("method", ["overlap", "conversion"])
def test_overlap_and_conversion_recover_a_known_map_and_apply_it_to_the_donor(
    trio: Trio, method: str, tmp_path: Path
) -> None:
    base, _ = load(trio.base)
    instruct, instruct_tokenizer = load(trio.instruct)
    donor, donor_tokenizer = load(trio.donor)
    token_map = TokenMap.load(trio.donor)
    b, i, d = (embedding_matrices(m) for m in (base, instruct, donor))
    assert set(b) == set(trio.maps)
    for name, expected in trio.maps.items():
        fitted = propagation_map(method, b[name], i[name], token_map)
        assert (fitted.transform - expected).abs().max() < 1e-8
        assert fitted.residual < 1e-8

    metrics = lep_model(trio.base, trio.instruct, trio.donor, tmp_path / "out", method)

    out, out_tokenizer = load(tmp_path / "out")
    assert out_tokenizer.get_vocab() == donor_tokenizer.get_vocab()
    chat = [k for k in sorted(out_tokenizer.added_tokens_decoder) if k < token_map.base_vocab_size]
    rest = torch.tensor([k for k in range(len(out_tokenizer)) if k not in chat])
    for name, matrix in embedding_matrices(out).items():
        expected = d[name] @ trio.maps[name]
        assert (matrix[rest] - expected[rest]).abs().max() < 1e-8  # every row, new ones included, is D·R ...
        assert torch.equal(matrix[chat], i[name][chat])  # ... except chat/special rows: copied from I
        assert metrics["maps"][name]["residual"] < 1e-8
    assert torch.equal(out.model.layers[0].mlp.up_proj.weight, instruct.model.layers[0].mlp.up_proj.weight)
    assert metrics["chat_rows_copied"] == len(chat) and metrics["new_rows"] == len(NEW_WORDS)
    special = sum(token.special for token in out_tokenizer.added_tokens_decoder.values())
    expected_fit = len(out_tokenizer) if method == "conversion" else token_map.base_vocab_size
    assert metrics["maps"][INPUT]["fit_rows"] == expected_fit - special  # special rows are copied, not fitted
    assert out_tokenizer.chat_template == instruct_tokenizer.chat_template


def test_conversion_equals_an_independent_fit_when_the_instruct_model_is_no_linear_image(
    trio: Trio, tmp_path: Path
) -> None:
    """I = B·R plus noise, so no exact map exists and a wrong T (other sub-tokens, special rows in the fit)
    gives another X. The oracle builds T row by row — each added word spelt by the old tokenizer's own model on
    its byte-level surface (the test helper's `decompose`, as the vocab stage spells tokens) — and solves with
    numpy: no langadapt code."""
    import numpy as np

    generator = torch.Generator().manual_seed(3)
    noisy, _ = load(trio.instruct)
    with torch.no_grad():
        for weight in embedding_matrices(noisy).values():
            weight.add_(0.05 * torch.randn(weight.shape, generator=generator, dtype=torch.float64))
    noisy_dir = save(noisy, trio.instruct, tmp_path / "noisy")
    base, old_tokenizer = load(trio.base)
    donor, donor_tokenizer = load(trio.donor)
    special = {i for i, token in donor_tokenizer.added_tokens_decoder.items() if token.special}
    assert special  # the chat tokens: their rows must not shape the map
    added = set(donor_tokenizer.added_tokens_decoder)

    metrics = lep_model(trio.base, noisy_dir, trio.donor, tmp_path / "out", "conversion")
    out, _ = load(tmp_path / "out")
    b, i, d, o = (embedding_matrices(m) for m in (base, noisy, donor, out))
    n_base = len(old_tokenizer)
    for name in b:
        rows_b, rows_i = [], []
        for new_id in range(len(donor_tokenizer)):
            if new_id in special:
                continue
            if new_id < n_base:
                ids = [new_id]
            else:
                assert new_id in added  # the fixture appends whole words as added tokens
                ids = decompose(old_tokenizer, donor_tokenizer.convert_ids_to_tokens(new_id))
            rows_b.append(b[name][ids].mean(0).numpy())
            rows_i.append(i[name][ids].mean(0).numpy())
        oracle = np.linalg.lstsq(np.stack(rows_b), np.stack(rows_i), rcond=None)[0]
        assert metrics["maps"][name]["fit_rows"] == len(rows_b) and metrics["maps"][name]["residual"] > 1e-3
        rest = torch.tensor([k for k in range(len(donor_tokenizer)) if k not in special])
        expected = d[name][rest].numpy() @ oracle
        assert np.abs(o[name][rest].numpy() - expected).max() < 1e-8


def test_swap_takes_the_donor_rows_as_they_are(trio: Trio, tmp_path: Path) -> None:
    metrics = lep_model(trio.base, trio.instruct, trio.donor, tmp_path / "out", "swap")
    out, out_tokenizer = load(tmp_path / "out")
    donor, _ = load(trio.donor)
    chat = set(out_tokenizer.added_tokens_decoder)
    rows = torch.tensor([k for k in range(len(out_tokenizer)) if k not in chat])
    for name, matrix in embedding_matrices(out).items():
        assert torch.equal(matrix[rows], embedding_matrices(donor)[name][rows])
        assert metrics["maps"][name]["identity_deviation"] == 0.0
        assert metrics["maps"][name]["residual"] > 0.01  # I is B·R: identity is a poor fit, and says so


def test_instruct_chat_tokens_the_donor_lacks_are_added_with_instructs_rows(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """OpenChat-style: I = B + a chat token of its own, its template and its eos."""
    trio = make_trio(tiny_llama, tmp_path / "trio")
    instruct, tokenizer = load(trio.instruct)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|end_of_turn|>"]})
    tokenizer.eos_token = "<|end_of_turn|>"
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] + '<|end_of_turn|>' }}{% endfor %}"
    instruct.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    eot = tokenizer.convert_tokens_to_ids("<|end_of_turn|>")
    with torch.no_grad():
        instruct.get_input_embeddings().weight[eot] = 7.0
        instruct.get_output_embeddings().weight[eot] = -7.0
    instruct.generation_config.eos_token_id = eot
    instruct.save_pretrained(tmp_path / "openchat")
    tokenizer.save_pretrained(tmp_path / "openchat")

    metrics = lep_model(trio.base, tmp_path / "openchat", trio.donor, tmp_path / "out")

    out, out_tokenizer = load(tmp_path / "out")
    donor_size = TokenMap.load(trio.donor).vocab_size
    new_eot = out_tokenizer.convert_tokens_to_ids("<|end_of_turn|>")
    assert new_eot == donor_size == len(out_tokenizer) - 1
    assert torch.equal(out.get_input_embeddings().weight[new_eot], torch.full((64,), 7.0, dtype=torch.float64))
    assert torch.equal(out.get_output_embeddings().weight[new_eot], torch.full((64,), -7.0, dtype=torch.float64))
    assert out_tokenizer.eos_token == "<|end_of_turn|>" and out.generation_config.eos_token_id == new_eot
    assert "<|end_of_turn|>" in out_tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    assert metrics["tokens_added_from_instruct"] == 1


def test_an_instruct_model_without_chat_template_warns_and_carries_on(
    trio: Trio, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(trio.instruct, tmp_path / "plain")
    config = json.loads((tmp_path / "plain" / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (tmp_path / "plain" / "tokenizer_config.json").write_text(json.dumps(config))
    (tmp_path / "plain" / "chat_template.jinja").unlink(missing_ok=True)
    assert not AutoTokenizer.from_pretrained(tmp_path / "plain").chat_template
    monkeypatch.setattr(logging.getLogger("langadapt"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="langadapt"):
        check_inputs(trio.base, tmp_path / "plain", trio.donor)
    assert "no chat template" in caplog.text


def resized_copy(model_dir: Path, out: Path, **changes: int) -> Path:
    config = AutoConfig.from_pretrained(model_dir)
    for key, value in changes.items():
        setattr(config, key, value)
    if "hidden_size" in changes:
        config.head_dim = changes["hidden_size"] // config.num_attention_heads
    save(AutoModelForCausalLM.from_config(config), model_dir, out)
    return out


def test_mismatched_models_are_refused_in_one_line_before_any_weights_load(
    tiny_llama: Path, tiny_llama_sp: Path, tmp_path: Path
) -> None:
    trio = make_trio(tiny_llama, tmp_path / "trio")
    narrow = resized_copy(trio.instruct, tmp_path / "narrow", hidden_size=32)
    shallow = resized_copy(trio.instruct, tmp_path / "shallow", num_hidden_layers=1)
    narrow_donor = resized_copy(trio.donor, tmp_path / "narrow_donor", hidden_size=32)
    cases = [
        ((trio.base, narrow, trio.donor), "differ in hidden size (64 vs 32)"),
        ((trio.base, shallow, trio.donor), "differ in layer count (2 vs 1)"),
        ((trio.base, tiny_llama_sp, trio.donor), "different vocabularies"),
        ((trio.base, trio.instruct, narrow_donor), "donor's hidden size (32) differs"),
        ((trio.base, trio.instruct, trio.base), "has no token_map.json"),
    ]
    for (base, instruct, donor), message in cases:
        with pytest.raises(LangadaptError, match=message.replace("(", r"\(").replace(")", r"\)")):
            lep_model(base, instruct, donor, tmp_path / "out")
    sp_trio = make_trio(tiny_llama_sp, tmp_path / "sp")  # a map built from another base
    with pytest.raises(LangadaptError, match="different base vocabulary"):
        lep_model(trio.base, trio.instruct, trio.donor, tmp_path / "out", token_map_path=sp_trio.donor)
    assert not (tmp_path / "out").exists()

