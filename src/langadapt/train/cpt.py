"""Continued pre-training (CPT) on a packed corpus: full, embeddings-only or LoRA; resumable; multi-process.

    metrics = run_cpt(CptJob(settings=cfg.cpt, model="runs/x/embed/model", data=Path("runs/x/pack/dataset"),
                             out=Path("out"), work=Path("scratch")))

Input: the data layer's packed dataset — a `datasets.save_to_disk` folder with `input_ids` and
`position_ids`, every row exactly the context length, position ids restarting at 0 at each document (and at
each row start), and `labels` (−100 on padding) when the packing pads; other columns are ignored.
Output (written by rank 0): `out/model/` (an HF folder in the input model's dtype, with tokenizer, chat
template and generation config; LoRA merged), `out/tensorboard/`, optionally `out/checkpoint/`.
Checkpoints go to `work/checkpoints/`, keyed by everything that decides the weights, so running the same
job again after a crash or `kill -9` continues from the last complete checkpoint with the same data order
and RNG state — bit-identical to an uninterrupted run on CPU.

Documents stay apart inside a packed row. transformers 5 builds a block-diagonal causal mask from
`position_ids` for sdpa / eager / flex attention when no attention mask and no KV cache are passed
(`masking_utils.find_packed_sequence_indices`), so the collator passes none and the model's cache is off.
Flash-attention kernels only read packing from a single flattened row (batch 1), so for them the collator
flattens the batch and passes `cu_seq_lens` explicitly (row starts are boundaries too). The first token of
each document gets no label: under per-document attention nothing before it is visible.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from langadapt.errors import LangadaptError
from langadapt.runstore import fingerprint_path, keyed_dir, stable_hash
from langadapt.train.common import (
    CheckpointPolicy,
    LangadaptTrainer,
    add_lora,
    checkpoint_step,
    count_parameters,
    device_flags,
    last_complete_checkpoint,
    load_model_for_training,
    precision_flags,
    remove_incomplete_checkpoints,
    schedule_arguments,
    train_only_embeddings,
    without_stale_deprecations,
)
from langadapt.train.progress import ThroughputProgress, friendly_training_errors, loss_curve, oom_advice

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import TrainerCallback, TrainingArguments

    from langadapt.train.config import CptConfig

log = logging.getLogger("langadapt.cpt")

PACKED_COLUMNS = ("input_ids", "position_ids")  # required
LABELS = "labels"  # optional: input_ids with -100 on padding (the pack stage's best_fit strategy)
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")
# Settings that change how a run is watched or launched, not the weights it produces.
_NOT_IN_KEY = (
    "logging_steps", "report_to", "keep_checkpoint", "dataloader_workers", "launch", "save_steps", "save_total_limit",
)


# --------------------------------------------------------------------------------------------------------
# The packed dataset.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedData:
    dataset: Dataset  # input_ids + position_ids, torch-formatted
    context_length: int

    @property
    def blocks(self) -> int:
        return len(self.dataset)


def load_packed(path: Path, *, vocab_size: int, max_positions: int | None = None) -> PackedData:
    """Open a packed dataset and check it fits the model, without reading it into memory."""
    import pyarrow.compute as pc
    from datasets import DatasetDict, load_from_disk

    path = Path(path)
    hint = "point cpt at the pack stage's dataset folder (<run>/pack/dataset)"
    if not path.is_dir():
        raise LangadaptError(f"packed dataset '{path}' does not exist — {hint}")
    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise LangadaptError(f"'{path}' is not a datasets.save_to_disk folder ({exc}) — {hint}") from None
    if isinstance(dataset, DatasetDict):
        if "train" not in dataset:
            raise LangadaptError(f"'{path}' holds splits {sorted(dataset)} but no 'train' — {hint}")
        dataset = dataset["train"]
    missing = [c for c in PACKED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise LangadaptError(
            f"packed dataset '{path}' lacks column(s) {', '.join(missing)} (it has {', '.join(dataset.column_names)})"
            f" — {hint}"
        )
    if len(dataset) == 0:
        raise LangadaptError(f"packed dataset '{path}' has no rows — check the pack stage's sources")
    columns = [*PACKED_COLUMNS, *([LABELS] if LABELS in dataset.column_names else [])]
    table = dataset.data
    lengths = {c: pc.min_max(pc.list_value_length(table.column(c))).as_py() for c in columns}
    context = lengths["input_ids"]["max"]
    if any(v["min"] != context or v["max"] != context for v in lengths.values()):
        raise LangadaptError(
            f"packed dataset '{path}' has rows of different lengths ({lengths}) — every row of "
            f"{', '.join(columns)} must be exactly the context length; re-run the pack stage"
        )
    ids = pc.min_max(pc.list_flatten(table.column("input_ids"))).as_py()
    if ids["min"] < 0 or ids["max"] >= vocab_size:
        raise LangadaptError(
            f"packed dataset '{path}' holds token ids {ids['min']}..{ids['max']} but the model has {vocab_size} "
            "embedding rows — the data was tokenised for another vocabulary; pack it with the model's tokenizer"
        )
    positions = pc.min_max(pc.list_flatten(table.column("position_ids"))).as_py()
    if positions["min"] < 0 or (max_positions is not None and positions["max"] >= max_positions):
        raise LangadaptError(
            f"packed dataset '{path}' has position ids {positions['min']}..{positions['max']} but the model handles "
            f"positions < {max_positions} — pack with a shorter context length"
        )
    dataset = dataset.select_columns(columns).with_format("torch")
    return PackedData(dataset=dataset, context_length=context)


class PackedCollator:
    """Batch packed rows for causal-LM training with documents kept apart (see the module docstring)."""

    def __init__(self, *, flatten: bool = False):
        self.flatten = flatten

    def __call__(self, rows: Sequence[dict[str, torch.Tensor]]) -> dict[str, Any]:
        input_ids = torch.stack([torch.as_tensor(r["input_ids"]) for r in rows]).long()
        position_ids = torch.stack([torch.as_tensor(r["position_ids"]) for r in rows]).long()
        labels = torch.stack([torch.as_tensor(r[LABELS]) for r in rows]).long() if LABELS in rows[0] else input_ids
        starts = position_ids == 0
        if not self.flatten:
            return {"input_ids": input_ids, "position_ids": position_ids, "labels": labels.masked_fill(starts, -100)}
        starts[:, 0] = True  # a row's first token never sees the previous row
        boundaries = torch.nonzero(starts.reshape(-1)).flatten()
        cu_seq_lens = torch.cat([boundaries, torch.tensor([input_ids.numel()])]).to(torch.int32)
        longest = int(cu_seq_lens.diff().max())
        return {
            "input_ids": input_ids.reshape(1, -1),
            "position_ids": position_ids.reshape(1, -1),
            "labels": labels.masked_fill(starts, -100).reshape(1, -1),
            "cu_seq_lens_q": cu_seq_lens,
            "cu_seq_lens_k": cu_seq_lens,
            "max_length_q": longest,
            "max_length_k": longest,
        }


# --------------------------------------------------------------------------------------------------------
# The job.
# --------------------------------------------------------------------------------------------------------


@dataclass
class CptJob:
    """Everything one CPT run needs; `run_cpt` is the same in the pipeline stage and the `cpt` verb."""

    settings: CptConfig
    model: str  # model folder or reference (the embed stage's model, else the base)
    data: Path  # packed dataset folder
    out: Path  # receives model/, tensorboard/ (rank 0 only)
    work: Path  # checkpoints; a re-run of the same job resumes from here
    tokenizer: str | None = None  # default: the model's own
    seed: int = 42
    trust_remote_code: bool = False
    extra_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    def key(self) -> str:
        """Names the computation: settings that shape the weights, seed, inputs, number of processes."""
        settings = self.settings.model_dump(mode="json", exclude=set(_NOT_IN_KEY))
        model = Path(self.model)
        return stable_hash({
            "settings": settings,
            "seed": self.seed,
            "model": fingerprint_path(model) if model.exists() else self.model,
            "data": fingerprint_path(self.data),
            "world_size": self.world_size,
        })


@dataclass(frozen=True)
class StepPlan:
    global_batch: int
    steps_per_epoch: int
    total_steps: int
    tokens_per_step: int


def plan_steps(settings: CptConfig, data: PackedData, world_size: int) -> StepPlan:
    global_batch = settings.batch_size * settings.gradient_accumulation_steps * world_size
    steps_per_epoch = data.blocks // global_batch
    if steps_per_epoch == 0:
        raise LangadaptError(
            f"the packed dataset has {data.blocks} blocks but one step needs {global_batch} (batch_size × "
            f"gradient_accumulation_steps × {world_size} processes) — lower batch_size or add data"
        )
    total = settings.max_steps or max(1, math.floor(settings.epochs * steps_per_epoch))
    return StepPlan(global_batch, steps_per_epoch, total, global_batch * data.context_length)


def training_arguments(
    settings: CptConfig, plan: StepPlan, checkpoints: Path, seed: int, world_size: int
) -> TrainingArguments:
    from transformers import TrainingArguments

    try:
        return TrainingArguments(
            output_dir=str(checkpoints),
            per_device_train_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            max_steps=plan.total_steps,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            adam_beta1=settings.adam_beta1,
            adam_beta2=settings.adam_beta2,
            adam_epsilon=settings.adam_epsilon,
            max_grad_norm=settings.max_grad_norm,
            optim=settings.optimizer,
            **schedule_arguments(
                settings.schedule, warmup_steps=settings.warmup_steps, total_steps=plan.total_steps,
                decay_ratio=settings.decay_ratio, min_lr_ratio=settings.min_lr_ratio,
            ),
            **precision_flags(settings.precision),
            **device_flags(world_size),
            activation_checkpointing=settings.gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
            save_strategy="steps",
            save_steps=settings.save_steps,
            save_total_limit=settings.save_total_limit,
            logging_steps=settings.logging_steps,
            logging_first_step=True,
            logging_nan_inf_filter=False,
            report_to=settings.report_to,
            seed=seed,
            data_seed=seed,
            dataloader_drop_last=True,  # every step sees the same number of tokens, on every process
            dataloader_num_workers=settings.dataloader_workers,
            remove_unused_columns=False,
            ddp_find_unused_parameters=False,
            disable_tqdm=False,
            log_level="warning",
        )
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        raise LangadaptError(f"cpt settings rejected by transformers: {reason}") from None


def run_cpt(job: CptJob, *, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Train, resuming from the last complete checkpoint of the same job; returns the metrics (rank 0)."""
    from transformers import AutoConfig, PrinterCallback, ProgressCallback, set_seed

    from langadapt.models import resolve

    settings = job.settings
    model_dir = resolve(job.model, trust_remote_code=job.trust_remote_code)
    model_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=job.trust_remote_code)
    data = load_packed(
        job.data, vocab_size=model_config.get_text_config().vocab_size,
        max_positions=getattr(model_config.get_text_config(), "max_position_embeddings", None),
    )
    world_size = job.world_size
    plan = plan_steps(settings, data, world_size)
    checkpoints = Path(job.work) / "checkpoints"
    args = training_arguments(settings, plan, checkpoints, job.seed, world_size)
    with args.main_process_first(local=False, desc="preparing the checkpoint folder"):
        if args.process_index == 0:  # the others wait, then see the prepared folder
            keyed_dir(checkpoints, job.key())
            remove_incomplete_checkpoints(checkpoints)
    resume = last_complete_checkpoint(checkpoints)
    main = args.process_index == 0
    if resume is not None and main:
        log.info("resuming from %s (step %d of %d)", resume, checkpoint_step(resume), plan.total_steps)

    set_seed(job.seed)  # LoRA's initial weights are random
    model = load_model_for_training(model_dir, attention=settings.attention, trust_remote_code=job.trust_remote_code)
    if settings.mode == "embeddings":
        train_only_embeddings(model)
    elif settings.mode == "lora":
        lora = settings.lora_settings
        model = add_lora(model, lora, train_embeddings=lora.train_embeddings)
    parameters = count_parameters(model)
    if main:
        log.info(
            "cpt %s: %s of %s parameters train; %d blocks × %d tokens; %d steps of %d blocks (%d tokens)",
            settings.mode, f"{parameters['trainable']:,}", f"{parameters['total']:,}", data.blocks,
            data.context_length, plan.total_steps, plan.global_batch, plan.tokens_per_step,
        )

    progress = ThroughputProgress(plan.tokens_per_step, log)
    trainer = LangadaptTrainer(
        model=model,
        args=args,
        train_dataset=data.dataset,
        data_collator=PackedCollator(flatten=settings.attention in FLASH_ATTENTION),
        callbacks=[CheckpointPolicy(), *callbacks],
        embedding_lr=settings.embedding_lr,
        trainable_only_checkpoints=settings.mode == "embeddings",
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress)
    with friendly_training_errors(checkpoints, oom_hint=oom_advice(settings, context_length=data.context_length)):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    final = Path(job.work) / "final"
    trainer.trainable_only_checkpoints = False
    trainer.save_model(str(final))  # every rank takes part: ZeRO-3 / FSDP gather the weights here
    if not trainer.is_world_process_zero():
        return {}

    state = trainer.state
    del trainer, model
    gc.collect()  # the Trainer holds cycles; free the optimizer state before loading the export copy
    write_outputs(job, final, checkpoints, base=model_dir, dtype=model_config.dtype)
    curve = loss_curve(state.log_history)
    tokens_seen = state.global_step * plan.tokens_per_step
    metrics = {
        "mode": settings.mode,
        "trainable_parameters": parameters["trainable"],
        "total_parameters": parameters["total"],
        "context_length": data.context_length,
        "blocks": data.blocks,
        "processes": world_size,
        "global_batch_blocks": plan.global_batch,
        "steps": state.global_step,
        "epochs": round(state.global_step * plan.global_batch / data.blocks, 4),
        "tokens_seen": tokens_seen,
        "tokens_per_second": round(progress.tokens_per_second(state), 2),  # this session (after any resume)
        "train_seconds": round(progress.seconds, 3),
        "resumed_from_step": checkpoint_step(resume) if resume else 0,
        "first_loss": curve[0]["loss"] if curve else math.nan,
        "final_loss": curve[-1]["loss"] if curve else math.nan,
        "loss_curve": curve,
        **job.extra_metrics,
    }
    metrics["summary"] = {
        "final loss": metrics["final_loss"], "tokens seen": tokens_seen, "tok/s": metrics["tokens_per_second"],
    }
    return metrics


def write_outputs(job: CptJob, final: Path, checkpoints: Path, *, base: Path, dtype: Any) -> None:
    """Rank 0: the exported model, the TensorBoard logs and (if asked) the last checkpoint into `job.out`."""
    export_from_folder(
        final, out=job.out / "model", base=base, tokenizer=job.tokenizer or job.model,
        lora=job.settings.mode == "lora", dtype=dtype, trust_remote_code=job.trust_remote_code,
    )
    shutil.rmtree(final, ignore_errors=True)
    if (checkpoints / "runs").is_dir():
        shutil.copytree(checkpoints / "runs", job.out / "tensorboard", dirs_exist_ok=True)
    if job.settings.keep_checkpoint and (last := last_complete_checkpoint(checkpoints)) is not None:
        shutil.move(str(last), str(job.out / "checkpoint"))


def export_from_folder(
    trained: Path, *, out: Path, base: Path, tokenizer: str, lora: bool, dtype: Any, trust_remote_code: bool
) -> Path:
    """Write the final HF folder from the weights the Trainer saved to `trained` (gathered from every rank;
    reloaded after the trainer and its optimizer state are freed): LoRA merged onto `base`, the input
    model's dtype, cache on, tokenizer + chat template. (SFT/DPO export from memory: `sft.export_in_memory`.)"""
    from langadapt.models import load_model, load_tokenizer, save_model_folder

    if lora:
        from peft import PeftModel

        base_model = load_model(base, dtype="float32", trust_remote_code=trust_remote_code)
        with without_stale_deprecations():
            model = PeftModel.from_pretrained(base_model, str(trained)).merge_and_unload()
    else:
        model = load_model(trained, dtype="float32", trust_remote_code=trust_remote_code)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = model.to(dtype or torch.float32)
    model.config.use_cache = True  # switched off for training only
    save_model_folder(model, load_tokenizer(tokenizer, trust_remote_code=trust_remote_code), out)
    return out
