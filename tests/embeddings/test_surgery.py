"""Embedding surgery: exact rows for kept and new tokens, tied and untied, byte-level and SentencePiece."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt.embeddings.surgery import (
    embed_model,
    init_matrix,
    resize_to_tokenizer,
    sample_fitted_normal,
    subtoken_mean,
)
from langadapt.errors import LangadaptError
from langadapt.vocab.token_map import TokenMap, vocab_hash
from tests.embeddings.helpers import decompose, extend_with_words


def concatenable_pair(tokenizer) -> tuple[int, int, str]:
    """Two ordinary old tokens whose concatenation is not a token and decomposes back into exactly them."""
    vocab = tokenizer.get_vocab()
    words = sorted((t, i) for t, i in vocab.items() if t.isalpha() and t.isascii() and len(t) >= 3)
    for left, a in words[:60]:
        for right, b in words[:60]:
            word = left + right
            if word not in vocab and decompose(tokenizer, word) == [a, b]:
                return a, b, word
    raise AssertionError("no concatenable pair in this tokenizer")


def matrices(model) -> tuple[torch.Tensor, torch.Tensor]:
    return model.get_input_embeddings().weight.detach(), model.get_output_embeddings().weight.detach()


def test_mean_init_gives_the_exact_mean_of_the_subtokens_from_each_matrix(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    a, b, word = concatenable_pair(tokenizer)
    new_dir, token_map = extend_with_words(tiny_model, [word, "Kaixoñ mundua"], tmp_path / "tok")
    old_e, old_h = (m.clone() for m in matrices(AutoModelForCausalLM.from_pretrained(tiny_model)))

    metrics = embed_model(tiny_model, new_dir, tmp_path / "model", "mean")

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    new_e, new_h = matrices(model)
    n = token_map.base_vocab_size
    assert new_e.shape[0] == n + 2 == len(AutoTokenizer.from_pretrained(tmp_path / "model"))
    assert torch.equal(new_e[:n], old_e) and torch.equal(new_h[:n], old_h)  # original rows bit-for-bit
    assert torch.equal(new_e[n], (old_e[a] + old_e[b]) / 2)
    assert torch.equal(new_h[n], (old_h[a] + old_h[b]) / 2)  # the head from its own rows
    pieces = token_map.decompositions[n + 1]
    assert torch.allclose(new_e[n + 1], old_e[pieces].mean(0), atol=1e-7)
    tied = bool(model.config.tie_word_embeddings)
    assert (new_e.data_ptr() == new_h.data_ptr()) == tied
    if not tied:
        assert not torch.equal(new_h[n], (old_e[a] + old_e[b]) / 2)
    assert metrics["new_rows"] == 2 and metrics["kept_rows"] == n and metrics["fallback_rows"] == 0
    assert metrics["tied"] == tied
    assert TokenMap.load(tmp_path / "model") == token_map  # the map travels with the model
    assert torch.isfinite(model(torch.tensor([[n, n + 1, 5]])).logits).all()


def test_special_tokens_keep_their_rows_even_when_the_map_calls_them_new(tiny_llama: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    old_e, old_h = (m.clone() for m in matrices(model))
    n = len(tokenizer)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    old_ids = list(range(n))
    old_ids[im_start] = -1  # a careless map: <|im_start|> as a "new" token made of '<', '|', ...
    token_map = TokenMap("bpe", n, vocab_hash(tokenizer), old_ids, {im_start: decompose(tokenizer, "<|im_start|>")})

    metrics = resize_to_tokenizer(model, tokenizer, tokenizer, token_map, "mean")

    new_e, new_h = matrices(model)
    assert torch.equal(new_e, old_e) and torch.equal(new_h, old_h)
    assert metrics["special_rows"] == 3 and metrics["new_rows"] == 0


def test_a_new_token_with_no_subtokens_gets_the_mean_row_never_nan() -> None:
    old = torch.randn(50, 8, dtype=torch.float64)
    token_map = TokenMap("extended", 50, "h", [*range(50), -1, -1], {50: [], 51: [3, 3, 4]})
    matrix = init_matrix(old, token_map, "mean", generator=torch.Generator().manual_seed(0))
    assert token_map.undecomposable_ids() == [50]
    assert torch.equal(matrix[50], old.mean(0))
    assert torch.allclose(matrix[51], (2 * old[3] + old[4]) / 3, atol=1e-15)  # repeated pieces count twice
    means, found = subtoken_mean(old, token_map, [0, 50, 51])
    assert found.tolist() == [True, False, True] and torch.equal(means[0], old[0])


def test_nan_in_the_base_rows_is_refused_in_one_line() -> None:
    old = torch.randn(10, 4)
    old[3, 1] = float("nan")
    token_map = TokenMap("extended", 10, "h", [*range(10), -1], {10: [3]})
    with pytest.raises(LangadaptError, match="not finite"):
        init_matrix(old, token_map, "mean", generator=torch.Generator())


def test_normal_init_samples_the_fitted_distribution_and_is_seeded() -> None:
    torch.manual_seed(0)
    mixing = torch.randn(6, 6, dtype=torch.float64)
    old = (torch.randn(4000, 6, dtype=torch.float64) @ mixing + 3.0).float()
    token_map = TokenMap("extended", 4000, "h", [*range(4000), *[-1] * 20000],
                         {4000 + i: [] for i in range(20000)})
    matrix = init_matrix(old, token_map, "normal", generator=torch.Generator().manual_seed(1))
    sample = matrix[4000:].double()
    data = old.double()
    assert torch.allclose(sample.mean(0), data.mean(0), atol=0.1)
    cov_sample, cov_data = torch.cov(sample.T), torch.cov(data.T)
    assert torch.linalg.matrix_norm(cov_sample - cov_data) / torch.linalg.matrix_norm(cov_data) < 0.05
    again = sample_fitted_normal(old, 20000, torch.Generator().manual_seed(1))
    other = sample_fitted_normal(old, 20000, torch.Generator().manual_seed(2))
    assert torch.equal(again.float(), matrix[4000:]) and not torch.allclose(again, other)


def test_random_init_uses_the_models_initializer_range(tiny_llama: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    n = len(tokenizer)
    token_map = TokenMap("extended", n, vocab_hash(tokenizer), [*range(n), *[-1] * 3000],
                         {n + i: [5] for i in range(3000)})
    new_tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    new_tokenizer.add_tokens([f"zz{i}" for i in range(3000)])
    metrics = resize_to_tokenizer(model, tokenizer, new_tokenizer, token_map, "random", seed=3)
    rows = model.get_input_embeddings().weight[n:].detach()
    assert abs(float(rows.std()) - model.config.initializer_range) < 0.002 and metrics["fallback_rows"] == 0


def test_mismatched_inputs_are_refused_before_loading_weights(
    tmp_path: Path, tiny_llama: Path, tiny_llama_sp: Path, byte_level_tokenizer: Path
) -> None:
    new_dir, _ = extend_with_words(tiny_llama, ["Kaixoñ"], tmp_path / "tok")
    with pytest.raises(LangadaptError, match="different base vocabulary"):
        embed_model(tiny_llama_sp, new_dir, tmp_path / "a")
    with pytest.raises(LangadaptError, match=r"has no token_map\.json"):
        embed_model(tiny_llama, byte_level_tokenizer, tmp_path / "b")
    data = json.loads((new_dir / "token_map.json").read_text())
    data["old_ids"].append(-1)
    data["decompositions"][str(len(data["old_ids"]) - 1)] = [5]
    (new_dir / "token_map.json").write_text(json.dumps(data))
    with pytest.raises(LangadaptError, match="folder was edited after the vocab stage"):
        embed_model(tiny_llama, new_dir, tmp_path / "c")
    assert not any((tmp_path / name).exists() for name in "abc")


@pytest.mark.smollm2
def test_smollm2_with_new_words_stays_finite_and_keeps_its_rows(smollm2_dir: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    words = ["Kaixo", "mundua", "euskara", "ñ", "日本語", "Testu-koadroa"]
    new_dir, token_map = extend_with_words(smollm2_dir, words, tmp_path / "tok")
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    old = model.get_input_embeddings().weight.detach().clone()
    new_tokenizer = AutoTokenizer.from_pretrained(new_dir)
    resize_to_tokenizer(model, tokenizer, new_tokenizer, token_map, "mean")
    weight = model.get_input_embeddings().weight.detach()
    assert torch.equal(weight[: len(tokenizer)], old) and torch.isfinite(weight).all()
    ids = new_tokenizer("Kaixo mundua, euskara 日本語", return_tensors="pt")["input_ids"]
    assert (ids >= len(tokenizer)).any()
    assert torch.isfinite(model(ids).logits).all()


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_llama_sp"])
def test_a_replaced_vocabulary_keeps_shared_and_special_rows_and_moves_special_ids(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """vocab method `bpe`: a new vocabulary, where only tokens spelled like old ones keep their rows."""
    from langadapt.vocab.base import BaseTokenizer
    from langadapt.vocab.build import build_vocabulary, save_vocabulary
    from tests import tiny

    model_dir = request.getfixturevalue(fixture)
    base = BaseTokenizer.load(str(model_dir))
    vocabulary = build_vocabulary(base, iter(tiny.texts("eu", limit=500)), method="bpe", vocab_size=700)
    save_vocabulary(vocabulary, base, tmp_path / "tok")
    old_e = AutoModelForCausalLM.from_pretrained(model_dir).get_input_embeddings().weight.detach()

    metrics = embed_model(model_dir, tmp_path / "tok", tmp_path / "model")

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    old_tokenizer, new_tokenizer = (
        AutoTokenizer.from_pretrained(model_dir),
        AutoTokenizer.from_pretrained(tmp_path / "model"),
    )
    new_e = model.get_input_embeddings().weight.detach()
    token_map = vocabulary.token_map
    kept = token_map.kept_ids()
    assert 0 < len(kept) < token_map.vocab_size and metrics["new_rows"] == token_map.vocab_size - len(kept)
    assert all(torch.equal(new_e[new], old_e[old]) for new, old in kept)
    eos = old_tokenizer.eos_token
    assert torch.equal(new_e[new_tokenizer.convert_tokens_to_ids(eos)], old_e[old_tokenizer.convert_tokens_to_ids(eos)])
    assert model.generation_config.eos_token_id == new_tokenizer.eos_token_id
    assert torch.isfinite(new_e).all() and metrics["special_rows"] >= 3
