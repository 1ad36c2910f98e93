"""Init methods: the registry, convex, distill, calibration and the auto probe, on the tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from langadapt.embeddings.config import AutoConfig, CalibrationConfig, EmbedConfig
from langadapt.embeddings.registry import (
    Corpus,
    InitInputs,
    InitResult,
    ProbeTexts,
    get_method,
    init_method,
    method_names,
    unregister,
)
from langadapt.embeddings.surgery import INPUT, OUTPUT, embedding_matrices, subtoken_mean
from langadapt.errors import LangadaptError
from langadapt.vocab.token_map import TokenMap
from tests import tiny
from tests.embeddings.helpers import extend_with_words, extended, resized, shared_shift, texts_corpus

FAST_DISTILL = {"steps": 6, "batch_size": 6, "english_batch_size": 2, "length": 24}


def test_builtin_methods_are_discovered_and_a_new_one_is_one_function(tiny_llama: Path, tmp_path: Path) -> None:
    assert {"mean", "normal", "random", "convex", "distill"} <= set(method_names())
    assert method_names(with_auto=True)[-1] == "auto"

    @init_method("planted-test")
    def planted(inputs: InitInputs, options) -> InitResult:
        """every new row = the old row 3"""
        return InitResult({n: inputs.base_rows(n)[3].expand(len(inputs.new_ids), -1).clone() for n in inputs.matrices},
                          report={"planted": True})

    try:
        tok_dir, token_map = extend_with_words(tiny_llama, ["Kaixoñ", "mundua"], tmp_path / "tok")
        model, old, _, metrics = resized(tiny_llama, tok_dir, "planted-test")
        n = token_map.base_vocab_size
        for name, matrix in embedding_matrices(model).items():
            assert torch.equal(matrix[:n], old[name]) and torch.equal(matrix[n], old[name][3])
        assert metrics["method"] == "planted-test" and metrics["init"] == {"planted": True}
    finally:
        unregister("planted-test")
    assert "planted-test" not in method_names()


def test_unknown_methods_and_options_fail_in_one_line() -> None:
    with pytest.raises(LangadaptError, match="'distil' is not an init method — did you mean 'distill'"):
        get_method("distil")
    with pytest.raises(LangadaptError, match=r"embed\.options\.distill: unknown key 'stepz' — did you mean 'steps'\?"):
        get_method("distill").parse_options({"stepz": 3})
    with pytest.raises(LangadaptError, match=r"embed\.options\.convex: 'dim': input should be greater than or equal "
                       r"to 2 \(got 0\); unknown key 'x'"):  # every problem, in one line
        get_method("convex").parse_options({"dim": 0, "x": 1})


def test_sparsemax_is_a_sparse_distribution() -> None:
    from langadapt.embeddings.methods.convex import sparsemax

    assert torch.allclose(sparsemax(torch.tensor([[1.0, 0.5, -1.0]])), torch.tensor([[0.75, 0.25, 0.0]]))
    weights = sparsemax(torch.randn(200, 30, dtype=torch.float64) * 3)
    assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(200, dtype=torch.float64))
    assert (weights == 0).any(-1).all()  # sparse: every row drops some candidates


@pytest.mark.parametrize("method", ["convex", "distill"])
def test_corpus_methods_keep_old_rows_and_give_finite_new_ones(method: str, tiny_model: Path, tmp_path: Path) -> None:
    tok_dir = extended(tiny_model, tmp_path / "tok")
    config = EmbedConfig(method=method, options={"distill": FAST_DISTILL, "convex": {"epochs": 2}})
    model, old, token_map, metrics = resized(tiny_model, tok_dir, config, texts_corpus())
    kept = token_map.kept_ids()
    new = token_map.new_ids()
    mean_rows = {name: subtoken_mean(o.float(), token_map, new)[0] for name, o in old.items()}
    changed = torch.zeros(len(new), dtype=torch.bool)
    for name, matrix in embedding_matrices(model).items():
        assert all(torch.equal(matrix[k], old[name][o]) for k, o in kept)  # bit-identical
        assert torch.isfinite(matrix).all()
        changed |= (matrix[new] != mean_rows[name]).any(1)
    assert int(changed.sum()) >= len(new) - metrics["fallback_rows"] > 0  # informed rows left the mean
    assert metrics["tied"] == (OUTPUT not in old) and 0 <= metrics["fallback_rows"] < len(new)


def test_mean_jitter_adds_scaled_fitted_normal_noise_to_new_rows_only(tiny_llama: Path, tmp_path: Path) -> None:
    tok_dir = extended(tiny_llama, tmp_path / "tok")
    plain, old, token_map, _ = resized(tiny_llama, tok_dir, "mean")
    config = EmbedConfig(method="mean", options={"mean": {"jitter": 0.5}})
    jittered, _, _, metrics = resized(tiny_llama, tok_dir, config)
    new = token_map.new_ids()
    for name, matrix in embedding_matrices(jittered).items():
        reference = embedding_matrices(plain)[name]
        assert all(torch.equal(matrix[k], old[name][o]) for k, o in token_map.kept_ids())  # bit-identical
        noise = (matrix[new] - reference[new]).double()
        assert (noise.norm(dim=1) > 0).all()
        base = old[name][: token_map.base_vocab_size].double()
        # per-dimension variance of the noise ≈ 0.25 × the old rows' (a fitted-normal sample scaled by 0.5)
        ratio = noise.var(0).sum() / (0.25 * base.var(0).sum())
        assert 0.7 < float(ratio) < 1.3
    assert metrics["init"]["jitter"] == 0.5


def test_convex_rows_are_convex_combinations_of_shared_rows(tiny_llama: Path, tmp_path: Path, monkeypatch) -> None:
    from langadapt.embeddings.methods import convex

    tok_dir = extended(tiny_llama, tmp_path / "tok")
    seen: dict[str, torch.Tensor] = {}
    original = convex.convex_weights

    def spy(*args, **kwargs):
        seen["weights"], seen["index"] = original(*args, **kwargs)
        return seen["weights"], seen["index"]

    monkeypatch.setattr(convex, "convex_weights", spy)
    model, old, token_map, metrics = resized(
        tiny_llama, tok_dir, EmbedConfig(method="convex", options={"convex": {"epochs": 2}}), texts_corpus()
    )
    weights = seen["weights"]
    assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(len(weights), dtype=torch.float64))
    # Rebuild the informed rows from the weights: the head from its own rows.
    vectors = convex.token_vectors(InitInputs(old, token_map, new_tokenizer=AutoTokenizer.from_pretrained(tok_dir),
                                              texts=texts_corpus().texts, generator=torch.Generator().manual_seed(0)),
                                   convex.ConvexOptions(epochs=2))
    shared = [i for i in vectors if token_map.old_ids[i] >= 0]
    informed = [t for t in token_map.new_ids() if t in vectors]
    old_ids = torch.tensor([token_map.old_ids[i] for i in shared])[seen["index"]]
    head = model.get_output_embeddings().weight.detach()
    expected = torch.einsum("nk,nkd->nd", weights, old[OUTPUT].double()[old_ids]).float()
    assert torch.allclose(head[informed], expected, atol=1e-6)
    assert metrics["fallback_rows"] == len(token_map.new_ids()) - len(informed)


def test_distill_recovers_a_planted_row(tiny_llama_tied: Path, tmp_path: Path) -> None:
    """A new token spelled by ONE old token: its old row reproduces the teacher exactly, and reading alone
    (hidden-state loss) pulls a random start most of the way to it."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_tied)
    piece = tokenizer.convert_tokens_to_ids("Ġeta") if "Ġeta" in tokenizer.get_vocab() else 300
    tok_dir, token_map = extend_with_words(tiny_llama_tied, ["QQZ"], tmp_path / "tok", {"QQZ": [piece]})
    word = tokenizer.convert_ids_to_tokens(piece).replace("Ġ", "")
    texts = [t.replace(f" {word} ", " QQZ ") for t in tiny.texts("eu", limit=2000) if f" {word} " in t]
    assert len(texts) > 100
    options = {"start": "random", "steps": 80, "batch_size": 8, "english_batch_size": 0, "length": 24,
               "learning_rate": 0.002, "likelihood_weight": 0.0}
    model, old, _, metrics = resized(
        tiny_llama_tied,
        tok_dir,
        EmbedConfig(method="distill", options={"distill": options}),
        Corpus(lambda: iter(texts)),
    )
    row = model.get_input_embeddings().weight.detach()[token_map.base_vocab_size]
    start = torch.randn(1, row.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.02
    target = old[INPUT][piece]
    assert metrics["fallback_rows"] == 0
    assert float((row - target).norm()) < 0.35 * float((start[0].float() - target).norm())


def test_too_small_a_corpus_falls_back_to_the_mean_and_counts(tiny_qwen2: Path, tmp_path: Path) -> None:
    tok_dir = extended(tiny_qwen2, tmp_path / "tok")
    tiny_corpus = Corpus(lambda: iter(["a"]), lambda: iter(["b"]))
    for method in ("convex", "distill"):
        model, old, token_map, metrics = resized(tiny_qwen2, tok_dir, EmbedConfig(method=method), tiny_corpus)
        new = token_map.new_ids()
        assert metrics["fallback_rows"] == len(new)
        mean_rows, _ = subtoken_mean(old[INPUT].float(), token_map, new)
        assert torch.allclose(model.get_input_embeddings().weight.detach()[new], mean_rows)
    with pytest.raises(LangadaptError, match="embed method 'distill' needs texts: it reads the target corpus"):
        resized(tiny_qwen2, tok_dir, "distill")


def test_convex_without_shared_tokens_fails_naming_the_fix(tiny_llama: Path, tmp_path: Path, monkeypatch) -> None:
    from langadapt.embeddings.methods import convex

    tok_dir = extended(tiny_llama, tmp_path / "tok")
    token_map = TokenMap.load(tok_dir)
    monkeypatch.setattr(convex, "token_vectors", lambda inputs, options: {t: [1.0, 0.0] for t in token_map.new_ids()})
    with pytest.raises(
        LangadaptError, match=r"embed method .convex.: no token the old and new vocabularies share.*use method mean"
    ):
        resized(tiny_llama, tok_dir, "convex", texts_corpus())


def test_calibration_caps_new_logits_on_english_and_only_moves_new_rows(tiny_llama: Path, tmp_path: Path) -> None:
    from langadapt.embeddings.calibrate import english_hidden

    tok_dir = extended(tiny_llama, tmp_path / "tok")
    calibration = CalibrationConfig(quantile=0.9, english_documents=32)
    corpus = texts_corpus()
    plain, old, token_map, _ = resized(tiny_llama, tok_dir, "mean", corpus)
    model, _, _, metrics = resized(tiny_llama, tok_dir, EmbedConfig(method="mean", calibration=calibration), corpus)
    new = token_map.new_ids()
    before, after = plain.lm_head.weight.detach(), model.lm_head.weight.detach()
    assert torch.equal(after[: token_map.base_vocab_size], old[OUTPUT])  # kept rows untouched
    assert torch.equal(model.get_input_embeddings().weight, plain.get_input_embeddings().weight)  # untied: input too
    hidden = english_hidden(InitInputs(old, token_map, AutoTokenizer.from_pretrained(tiny_llama), model=plain,
                                       english=corpus.english), calibration)
    first = torch.tensor([token_map.decompositions[t][0] for t in new])
    mu = hidden.mean(0)
    hidden = hidden[hidden @ mu > 0]  # the positions a shift along the mean hidden state can lower
    held_before = (hidden @ (before[new] - old[OUTPUT][first]).T <= 0).double().mean(0)
    held_after = (hidden @ (after[new] - old[OUTPUT][first]).T <= 1e-5).double().mean(0)
    moved = held_before < 0.9
    assert metrics["calibration"]["offset_rows"] == int(moved.sum()) > 0
    assert torch.equal(after[new][~moved], before[new][~moved])  # rows already within the cap are untouched
    assert (held_after >= 0.9 - 1e-9).all()  # the cap holds at 90 % of the English positions for every row


def test_shared_offset_makes_the_new_tokens_class_share_match_the_text(tiny_llama: Path, tmp_path: Path) -> None:
    """Untied, so the fit is exact: after it, the resized model's own logits give Σ a·(P(new) − [new]) = 0
    on the fitted positions (the likelihood's stationarity in c), and one common shift moved every new
    output row while the input side and the kept rows stayed as they were."""
    from langadapt.embeddings.positions import ClassPositions, class_positions

    calibration = CalibrationConfig(offset=False, shared_offset=True, target_documents=24, english_documents=8)
    run = shared_shift(tiny_llama, tmp_path, calibration)
    assert abs(run.report["shared_offset"]) > 0.05
    assert torch.allclose(run.shift, run.shift[:1].expand_as(run.shift), atol=1e-6)  # one common shift
    new = run.token_map.new_ids()

    def positions_of(m) -> ClassPositions:
        rows = {INPUT: m.get_input_embeddings().weight.detach()[new], OUTPUT: m.lm_head.weight.detach()[new]}
        return class_positions(run.inputs, rows, calibration)

    fitted, unfitted = positions_of(run.model), positions_of(run.plain)
    scale = float(fitted.along.abs().sum())
    assert abs(fitted.slope(0.0)) / scale < 1e-4  # stationary: the model's class mass matches the text's
    assert abs(unfitted.slope(0.0)) / scale > 1e-2
    assert fitted.nll(0.0) < unfitted.nll(0.0)
    assert run.report["nll_per_position_after"] < run.report["nll_per_position_before"]


def test_one_shared_shift_at_a_time() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shared_offset and shared_direction both shift every new row"):
        CalibrationConfig(shared_offset=True, shared_direction=True)
    with pytest.raises(ValidationError, match="direction_word_start and direction_clusters group the shared direct"):
        CalibrationConfig(direction_clusters=4)
    from langadapt.embeddings.positions import class_positions

    without_corpus = InitInputs({}, TokenMap.__new__(TokenMap))
    for key in ("shared_offset", "shared_direction"):
        with pytest.raises(LangadaptError, match=rf"embed method 'calibration\.{key}' needs model"):
            class_positions(without_corpus, {}, CalibrationConfig(**{key: True}))


def test_auto_picks_the_lowest_probe_score_within_the_english_limit(tiny_llama: Path, tmp_path: Path) -> None:
    from langadapt.embeddings.probe import choose

    rows = [
        {"method": "a", "target_bpc": 2.0, "english_bpc": 1.05},
        {"method": "b", "target_bpc": 2.2, "english_bpc": 1.009},
        {"method": "c", "target_bpc": 2.5, "english_bpc": 1.0},
    ]
    assert choose(rows, 1.0, 0.01) == ("b", True)
    assert choose(rows, 1.0, 0.10) == ("a", True)
    assert choose(rows, 0.9, 0.01) == ("c", False)  # none within: the least English regression

    tok_dir = extended(tiny_llama, tmp_path / "tok")
    probe = ProbeTexts(tiny.texts("eu", path=tiny.EU_DEV, limit=8), tiny.texts("en", path=tiny.EU_DEV, limit=8))
    config = EmbedConfig(method="auto", auto=AutoConfig(methods=["mean", "random", "normal"], english_limit=1.0))
    model, _, _, metrics = resized(tiny_llama, tok_dir, config, texts_corpus(probe=probe))
    table = metrics["probe"]
    best = min(table["methods"], key=lambda r: r["target_bpc"])
    assert metrics["method"] == table["chosen"] == best["method"] and table["limit_met"]
    assert {r["method"] for r in table["methods"]} == {"mean", "random", "normal"}
    assert table["original"]["english_bpc"] > 0
    from langadapt.evaluate.bpc import bits_per_character

    scored = bits_per_character(model, AutoTokenizer.from_pretrained(tok_dir), probe.target, max_length=256)
    assert scored.bits_per_char == pytest.approx(best["target_bpc"], abs=1e-4)  # the winner is what was installed


@pytest.mark.parametrize("dropped", [False, True])
def test_split_matrix_reads_like_the_whole_new_matrix(dropped: bool) -> None:
    """Kept ids read their old rows, new ids the trained rows — also when old ids are dropped or reordered
    (Optimized); logsumexp over the parts equals it over the whole matrix."""
    from langadapt.embeddings.methods.distill import SplitMatrix

    generator = torch.Generator().manual_seed(3)
    old = torch.randn(10, 4, generator=generator, dtype=torch.float64)
    old_ids = [9, 0, 4, 2, 5, 7, -1, -1, -1] if dropped else [*range(10), -1, -1, -1]
    token_map = TokenMap("extended", 10, "x", old_ids, {i: [1] for i, o in enumerate(old_ids) if o < 0})
    fresh = torch.tensor(token_map.new_ids())
    rows = torch.randn(len(fresh), 4, generator=generator, dtype=torch.float64)
    whole = torch.cat([old[torch.tensor([o for o in old_ids if o >= 0])], rows])  # new ids come last here
    split = SplitMatrix.of(old, rows, token_map, fresh)
    ids = torch.tensor([[0, len(old_ids) - 1, 3], [len(old_ids) - 2, 1, 2]])
    torch.testing.assert_close(split.lookup(ids), whole[ids], rtol=0, atol=0)
    hidden = torch.randn(7, 4, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(split.logsumexp(hidden), torch.logsumexp(hidden @ whole.T, -1), rtol=0, atol=1e-12)
