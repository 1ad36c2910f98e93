"""`embed.calibration.shared_direction`: one direction per group of new tokens, on the tiny fixtures."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer

from langadapt.embeddings.config import CalibrationConfig, EmbedConfig
from langadapt.embeddings.direction import L2_GRID, WORD_MARKERS, l2_weight, spherical_kmeans, token_groups
from langadapt.embeddings.positions import class_positions
from langadapt.embeddings.registry import InitInputs
from langadapt.embeddings.surgery import INPUT, OUTPUT
from tests.embeddings.helpers import extended, resized, shared_shift, texts_corpus


def group_shifts(shift: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """The one shift of each group's rows (asserted common within the group)."""
    directions = torch.stack([shift[groups == g][0] for g in range(int(groups.max()) + 1)])
    assert torch.allclose(shift, directions[groups], atol=1e-5)
    return directions


def test_shared_direction_is_the_regularised_likelihood_optimum(tiny_llama: Path, tmp_path: Path) -> None:
    """Untied: one vector d_g is added to every new output row of group g, and the resized model's own logits
    on the fitted positions satisfy the multinomial fit's stationarity for every group,
    Σ h·(P(g) − [truth in g]) / n + l2·s²·d_g = 0. Groups never mix word-initial and continuation tokens."""
    calibration = CalibrationConfig(offset=False, shared_direction=True, direction_word_start=True,
                                    direction_clusters=2, target_documents=24, english_documents=8)
    run = shared_shift(tiny_llama, tmp_path, calibration)
    report = run.report
    new = run.token_map.new_ids()
    plain_head = run.plain.lm_head.weight.detach()[new]
    groups = token_groups(run.inputs, plain_head, True, 2)  # the method's rows group the tokens
    assert report["shared_direction_groups"] == int(groups.max()) + 1 == 4
    strings = run.inputs.new_tokenizer.convert_ids_to_tokens(new)
    for g in range(4):
        starts = {strings[i].startswith(WORD_MARKERS) for i in (groups == g).nonzero()[:, 0].tolist()}
        assert len(starts) == 1  # a group is all word-initial or all continuation
    directions = group_shifts(run.shift, groups).double()
    assert (directions.norm(dim=1) > 1e-3).all() and report["shared_direction_l2"] in L2_GRID
    assert torch.cdist(directions, directions).triu(1)[0, 1:].min() > 1e-3  # the groups moved differently
    by_l2 = report["held_out_nll_by_l2"]
    assert by_l2[str(report["shared_direction_l2"])] == min(by_l2.values())
    rows = {INPUT: run.model.get_input_embeddings().weight.detach()[new],
            OUTPUT: run.model.lm_head.weight.detach()[new]}
    fitted = class_positions(run.inputs, rows, calibration, groups)  # the model's group odds with D already in
    x = fitted.hidden
    lse = torch.logsumexp(torch.cat([fitted.old_lse[:, None], fitted.group_lse], 1), 1, keepdim=True)
    p = (fitted.group_lse - lse).exp()
    y = torch.nn.functional.one_hot(fitted.true_group + 1, 5)[:, 1:].double()
    gradient = (x.T @ (p - y) / len(x)).T + l2_weight(fitted, report["shared_direction_l2"]) * directions
    assert float(gradient.norm()) / float((x.T @ y / len(x)).norm()) < 1e-4
    assert report["nll_per_position_after"] < report["nll_per_position_before"]


def test_tied_shared_direction_refits_on_what_the_model_then_reads(tiny_llama_tied: Path, tmp_path: Path) -> None:
    """Tied, the shift moves the input rows too: each pass refits on the hidden states the shifted rows give;
    kept rows stay bit-identical, each group moves as one, and the last pass lowers the NLL it was fitted on."""
    tok_dir = extended(tiny_llama_tied, tmp_path / "tok")
    calibration = CalibrationConfig(offset=False, shared_direction=True, direction_passes=2, direction_clusters=3,
                                    target_documents=24, english_documents=8)  # 3 clusters, no word-start split
    corpus = texts_corpus()
    plain, old, token_map, _ = resized(tiny_llama_tied, tok_dir, "mean", corpus)
    model, _, _, metrics = resized(tiny_llama_tied, tok_dir, EmbedConfig(method="mean", calibration=calibration),
                                   corpus)
    report = metrics["calibration"]
    assert len(report["shared_direction_norms"]) == 2 and report["tied"]
    before, after = plain.get_input_embeddings().weight.detach(), model.get_input_embeddings().weight.detach()
    assert torch.equal(after[: token_map.base_vocab_size], old[INPUT][: token_map.base_vocab_size])
    new = token_map.new_ids()
    inputs = InitInputs(old, token_map, new_tokenizer=AutoTokenizer.from_pretrained(tok_dir))
    groups = token_groups(inputs, before[new], False, 3)
    directions = group_shifts(after[new] - before[new], groups)
    assert report["shared_direction_groups"] == len(directions) and torch.isfinite(after).all()
    assert 0 < float(directions.norm()) <= sum(report["shared_direction_norms"]) + 1e-4  # D₁ + D₂
    assert report["nll_per_position_after"] < report["nll_per_position_before"]


def test_shared_direction_on_too_few_documents_takes_the_strongest_l2(tiny_llama: Path, tmp_path: Path) -> None:
    """And by default one direction for every new token: one common shift."""
    calibration = CalibrationConfig(offset=False, shared_direction=True, target_documents=2, english_documents=1)
    run = shared_shift(tiny_llama, tmp_path, calibration)
    assert run.report["shared_direction_l2"] == L2_GRID[-1] and run.report["held_out_nll_by_l2"] is None
    assert run.report["shared_direction_groups"] == 1 and torch.isfinite(run.shift).all()
    assert torch.allclose(run.shift, run.shift[:1].expand_as(run.shift), atol=1e-6)


def test_spherical_kmeans_groups_rows_by_direction_whatever_their_norm() -> None:
    """Three planted directions, rows at norms 0.1–10 around them: three clusters, one per direction,
    the same labels on a second run (seeded)."""
    generator = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=generator), dim=1)
    truth = torch.arange(60) % 3
    norms = torch.logspace(-1, 1, 60)[torch.randperm(60, generator=generator)]
    rows = (centres[truth] + 0.05 * torch.randn(60, 16, generator=generator)) * norms[:, None]
    labels = spherical_kmeans(rows.double(), 3)
    assert torch.equal(labels, spherical_kmeans(rows.double(), 3))
    pairs = {(int(t), int(label)) for t, label in zip(truth, labels, strict=True)}
    assert len(pairs) == 3 and len({label for _, label in pairs}) == 3
