"""Shared training utilities: exact schedules, param groups, checkpoint bookkeeping, curves."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import get_scheduler

from langadapt.errors import LangadaptError
from langadapt.train.common import (
    COMPLETE_MARKER,
    embedding_parameters,
    last_complete_checkpoint,
    remove_incomplete_checkpoints,
    schedule_arguments,
    split_embedding_groups,
    train_only_embeddings,
)
from langadapt.train.progress import format_seconds, loss_curve

PEAK, TOTAL, WARMUP = 2e-4, 100, 10


def learning_rates(schedule: str, **kwargs: float) -> list[float]:
    args = schedule_arguments(schedule, warmup_steps=WARMUP, total_steps=TOTAL, **kwargs)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = get_scheduler(
        args["lr_scheduler_type"], optimizer, num_warmup_steps=args["warmup_steps"], num_training_steps=TOTAL,
        scheduler_specific_kwargs=args["lr_scheduler_kwargs"],
    )
    rates = []
    for _ in range(TOTAL):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_warms_up_linearly_then_follows_half_a_cosine_to_the_floor() -> None:
    rates = learning_rates("cosine", min_lr_ratio=0.1)
    for step in range(TOTAL):
        if step < WARMUP:
            expected = PEAK * step / WARMUP
        else:
            progress = (step - WARMUP) / (TOTAL - WARMUP)
            expected = PEAK * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        assert rates[step] == pytest.approx(expected, rel=1e-9, abs=1e-15), step


def test_wsd_holds_the_peak_then_cools_down_with_one_minus_sqrt() -> None:
    rates = learning_rates("wsd", decay_ratio=0.2, min_lr_ratio=0.0)
    decay_start = TOTAL - 20
    assert rates[WARMUP:decay_start] == [pytest.approx(PEAK)] * (decay_start - WARMUP)
    for step in range(decay_start, TOTAL):
        expected = PEAK * (1 - math.sqrt((step - decay_start) / 20))
        assert rates[step] == pytest.approx(expected, rel=1e-9), step
    assert rates[WARMUP - 1] < PEAK


def test_constant_rewarms_then_stays_at_the_peak() -> None:
    rates = learning_rates("constant")
    assert rates[:WARMUP] == [pytest.approx(PEAK * s / WARMUP) for s in range(WARMUP)]
    assert set(rates[WARMUP:]) == {PEAK}


def test_impossible_schedules_are_refused() -> None:
    with pytest.raises(LangadaptError, match="never reach its peak"):
        schedule_arguments("cosine", warmup_steps=100, total_steps=50)
    with pytest.raises(LangadaptError, match="exceed the 50 steps"):
        schedule_arguments("wsd", warmup_steps=30, total_steps=50, decay_ratio=0.5)


def test_embedding_groups_get_their_own_rate_and_keep_weight_decay(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    body = [p for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n]
    embeddings = embedding_parameters(model)
    assert len(embeddings) == 2  # untied: input embeddings + head
    optimizer = torch.optim.AdamW(
        [{"params": body + embeddings, "weight_decay": 0.1}], lr=1e-4, betas=(0.9, 0.95)
    )
    split_embedding_groups(optimizer, embeddings, 1e-3)
    split_embedding_groups(optimizer, embeddings, 1e-3)  # idempotent
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups] == [
        (1e-4, 0.1, len(body)), (1e-3, 0.1, 2)
    ]
    assert optimizer.param_groups[1]["betas"] == (0.9, 0.95)


def test_tied_embeddings_are_one_trainable_tensor(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
    train_only_embeddings(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0] is model.lm_head.weight is model.model.embed_tokens.weight
    assert embedding_parameters(model) == trainable


def test_only_marked_checkpoints_count(tmp_path: Path) -> None:
    for step, complete in ((2, True), (4, True), (6, False), (10, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / COMPLETE_MARKER).write_text("")
    (tmp_path / "runs").mkdir()
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert sorted(remove_incomplete_checkpoints(tmp_path)) == ["checkpoint-10", "checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4", "runs"]
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_loss_curve_keeps_losses_and_thins_evenly() -> None:
    history = [{"loss": 5.0 - i / 100, "learning_rate": 1e-4, "grad_norm": 1.0, "step": i + 1} for i in range(1200)]
    history.append({"train_runtime": 3.0, "step": 1200})
    curve = loss_curve(history, max_points=500)
    assert len(curve) <= 501 and curve[0]["step"] == 1 and curve[-1]["step"] == 1200
    assert curve[1]["step"] - curve[0]["step"] == 3
    assert loss_curve(history[:3]) == [
        {"step": s, "loss": pytest.approx(5.0 - (s - 1) / 100), "lr": 1e-4, "grad_norm": 1.0} for s in (1, 2, 3)
    ]


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (59.6, 61, 3725, math.nan)] == ["1m00s", "1m01s", "1h02m", "?"]
