"""Preference alignment (DPO, IPO) with TRL's DPOTrainer, on the LoRA lifecycle of `train.sft`.

The reference model is implicit with LoRA: TRL scores the reference with the adapters switched off, which is
the model the stage started from (the full-size embeddings of `modules_to_save` switch off with them). In
full fine-tuning the reference is a frozen copy of the starting model, taken in memory after any chat-template
tokens were added, so policy and reference always share one vocabulary.

Pairs are filtered before TRL sees them, so its truncation never runs: a pair whose prompt exceeds
`max_prompt_length`, or whose prompt + answer exceeds `max_length`, is dropped and counted.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

from langadapt.data.instruct import PreferencePair, load_preferences
from langadapt.errors import LangadaptError
from langadapt.train.tuning import (
    TuningJob,
    finish,
    load_for_tuning,
    make_trainer,
    render,
    train_resuming,
    training_arguments,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

    from langadapt.train.config import DpoConfig

log = logging.getLogger("langadapt.train.dpo")

# TRL's names of the reward statistics it logs, reported in the manifest under shorter names.
_REWARD_LOGS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected"}


def build_dpo_dataset(
    tokenizer: PreTrainedTokenizerBase, pairs: list[PreferencePair], max_length: int, max_prompt_length: int | None
) -> tuple[Dataset, dict[str, int]]:
    """A conversational preference dataset (prompt / chosen / rejected messages) of the pairs that fit."""
    from datasets import Dataset

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    rows: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": []}
    counts: Counter[str] = Counter()
    for pair in pairs:
        chosen = [{"role": "assistant", "content": pair.chosen}]
        rejected = [{"role": "assistant", "content": pair.rejected}]
        if (
            max_prompt_length is not None
            and length(render(tokenizer, pair.prompt, add_generation_prompt=True)) > max_prompt_length
        ):
            counts["dropped_prompt_too_long"] += 1
            continue
        if max(length(render(tokenizer, pair.prompt + side)) for side in (chosen, rejected)) > max_length:
            counts["dropped_too_long"] += 1
            continue
        rows["prompt"].append(pair.prompt)
        rows["chosen"].append(chosen)
        rows["rejected"].append(rejected)
    for reason in ("dropped_prompt_too_long", "dropped_too_long"):
        if counts[reason]:
            log.warning("%d of %d preference pairs %s", counts[reason], len(pairs), reason.replace("_", " "))
    if not rows["prompt"]:
        raise LangadaptError(f"no preference pair fits max_length {max_length} tokens — raise dpo.max_length")
    counts["examples"] = len(rows["prompt"])
    return Dataset.from_dict(rows), dict(counts)


def run_dpo(job: TuningJob, settings: DpoConfig, pairs: list[PreferencePair]) -> dict[str, Any]:
    """Train on preference `pairs`, then export like SFT; returns the metrics for the manifest."""
    from trl import DPOConfig, DPOTrainer

    prepared = load_for_tuning(job, settings)
    dataset, data_stats = build_dpo_dataset(prepared.tokenizer, pairs, settings.max_length, settings.max_prompt_length)
    reference = None
    if settings.mode == "full":
        reference = copy.deepcopy(prepared.model).eval().requires_grad_(False)
    args = DPOConfig(
        **training_arguments(settings, job.work / "checkpoints", job.seed), beta=settings.beta,
        loss_type=[settings.loss_type], max_length=None, precompute_ref_log_probs=False,
    )
    with warnings.catch_warnings():
        # With LoRA, TRL adds a frozen "ref" copy of the adapter; on a tied model peft then warns that it finds no
        # tied modules to tie (they are already wrapped by the trained adapter). The reference is still exactly
        # the starting model (tests/train/test_dpo.py).
        warnings.filterwarnings("ignore", message="You have requested `ensure_weight_tying`")
        trainer = make_trainer(DPOTrainer, settings.embedding_lr, model=prepared.model, ref_model=reference,
                               args=args, train_dataset=dataset, processing_class=prepared.tokenizer)
    resumed = train_resuming(trainer, settings)
    rewards = _last_logged(trainer.state.log_history)
    metrics = finish(job, trainer, prepared, {"data": data_stats, "resumed_from_step": resumed, "beta": settings.beta,
                                              "loss_type": settings.loss_type, **rewards})
    if "reward_margin" in rewards:
        metrics["summary"]["reward margin"] = round(rewards["reward_margin"], 4)
    return metrics


def _last_logged(history: list[dict[str, Any]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for entry in history:
        for key, name in _REWARD_LOGS.items():
            if key in entry:
                found[name] = float(entry[key])
    return found


def train_dpo(job: TuningJob, settings: DpoConfig) -> dict[str, Any]:
    """A whole DPO job on the section's preference files, as the pipeline stage and the `dpo` verb run it."""
    pairs, report = load_preferences(settings.data)
    return {"files": report.to_dict(), **run_dpo(job, settings, pairs)}
