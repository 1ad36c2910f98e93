"""Training pieces shared by the CPT, SFT and DPO stages, built on transformers' `Trainer`.

What the Trainer does well (loops, accumulation, mixed precision, DDP / DeepSpeed / FSDP through accelerate,
checkpoint + RNG + data-order resume) stays the Trainer's. This module adds what it lacks:

- `load_model_for_training`, `precision_flags`, `device_flags`: fp32 master weights, bf16 autocast where the
  hardware has it, gloo for multi-process CPU runs.
- `train_only_embeddings`, `add_lora`, `embedding_parameters`: the trainable-parameter modes, with tied input
  embeddings / LM head handled as the one matrix they are.
- `schedule_arguments`: warm-up + cosine, warm-up-stable-decay (WSD), constant with (re-)warm-up.
- `TrainerExtras` (mixin; CPT's `LangadaptTrainer`, SFT's and DPO's TRL trainers): a separate learning rate
  for embeddings + head, a stop on the first NaN/inf loss, checkpoints of only the trained tensors in
  embeddings-only runs, no TRL telemetry.
- `CheckpointPolicy`, `last_complete_checkpoint`: a checkpoint counts only once every rank finished writing it
  (the Trainer writes in place, so `kill -9` mid-save leaves a half folder that must never be resumed from).
(Progress lines, loss curves and one-line training errors are in `train.progress`.)
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer, TrainerCallback

from langadapt.embeddings.surgery import is_tied
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from langadapt.train.config import LoraConfig

log = logging.getLogger("langadapt.train")

COMPLETE_MARKER = "LANGADAPT_COMPLETE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# --------------------------------------------------------------------------------------------------------
# Devices, precision, model loading.
# --------------------------------------------------------------------------------------------------------


def has_accelerator() -> bool:
    return torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())


def precision_flags(precision: str) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16 flags for a config's `precision` ("auto": bf16 where the GPU has it)."""
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        raise LangadaptError("precision fp16 needs a CUDA GPU — use precision: bf16 or fp32 here")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def device_flags(world_size: int) -> dict[str, Any]:
    """TrainingArguments' device flags: CPU when there is no accelerator, gloo for multi-process CPU runs."""
    use_cpu = not has_accelerator()
    flags: dict[str, Any] = {"use_cpu": use_cpu}
    if use_cpu and world_size > 1:
        flags["ddp_backend"] = "gloo"
    return flags


def load_model_for_training(
    ref: str | Path, *, attention: str = "auto", trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a causal LM with fp32 master weights (mixed precision autocasts around them)."""
    from langadapt.models import load_model

    kwargs = {} if attention == "auto" else {"attn_implementation": attention}
    try:
        model = load_model(ref, dtype="float32", trust_remote_code=trust_remote_code, **kwargs)
    except (ImportError, ValueError) as exc:
        if attention == "auto":
            raise
        reason = str(exc).strip().splitlines()[0][:200]
        raise LangadaptError(
            f"attention '{attention}' cannot be used here ({reason}) — install its kernels or set attention: sdpa"
        ) from None
    # A KV cache is useless in training, and its presence also turns off transformers' per-document masking
    # of packed rows (masking_utils only looks at position_ids when there is no cache).
    model.config.use_cache = False
    return model


# --------------------------------------------------------------------------------------------------------
# What trains: embeddings only, LoRA, or everything.
# --------------------------------------------------------------------------------------------------------


def embedding_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable parameters of the input embeddings and the LM head — one tensor when they are tied.

    Works on PEFT models too, where the trainable tensors are the `modules_to_save` copies.
    """
    found: dict[int, torch.nn.Parameter] = {}
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            for param in module.parameters():
                if param.requires_grad:
                    found[id(param)] = param
    return list(found.values())


def train_only_embeddings(model: PreTrainedModel) -> None:
    """Freeze everything but the input embeddings and the LM head (the LEP CPT recipe)."""
    head = model.get_output_embeddings()
    if head is None:
        raise LangadaptError(f"{type(model).__name__} has no LM head to train — use mode: full or lora")
    model.requires_grad_(False)
    model.get_input_embeddings().requires_grad_(True)
    head.requires_grad_(True)  # the same tensor as the input embeddings when tied: trained once, stays tied


@contextlib.contextmanager
def without_stale_deprecations() -> Iterator[None]:
    """Hide a deprecation users can't act on: peft and TRL still read transformers' `is_gradient_checkpointing`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def add_lora(
    model: PreTrainedModel, settings: LoraConfig, *, train_embeddings: bool, layers: list[int] | None = None
) -> torch.nn.Module:
    """Wrap `model` with LoRA adapters (on `layers` only, when given; negative counts from the end); the
    embeddings and head train in full when `train_embeddings`.

    Tied models keep one shared trainable matrix (`ensure_weight_tying`), so new tokens learn once and the
    merged model stays tied — the failure LLaMA-Factory users hit with two diverging copies (#6446).
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    if layers is not None:
        count = model.config.get_text_config().num_hidden_layers
        bad = [layer for layer in layers if not -count <= layer < count]
        if bad:
            raise LangadaptError(
                f"lora.layers {bad} do not exist: the model has layers 0..{count - 1} (or -1..-{count})"
            )
        layers = sorted({layer % count for layer in layers})
    modules_to_save = None
    if train_embeddings:
        head = model.get_output_embeddings()
        if head is None:
            raise LangadaptError(f"{type(model).__name__} has no LM head — set lora.train_embeddings: false")
        modules_to_save = sorted({_module_name(model, model.get_input_embeddings()), _module_name(model, head)})
    config = PeftLoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        layers_to_transform=layers,
        modules_to_save=modules_to_save,
        ensure_weight_tying=train_embeddings and is_tied(model),
        task_type="CAUSAL_LM",
    )
    try:
        with without_stale_deprecations():
            return get_peft_model(model, config)
    except ValueError as exc:
        reason = str(exc).strip().splitlines()[0][:200]
        raise LangadaptError(
            f"lora settings do not fit {type(model).__name__} ({reason}) — name its linear layers in "
            "lora.target_modules (e.g. q_proj, v_proj) or use all-linear"
        ) from None


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    raise LangadaptError(f"cannot find {type(module).__name__} inside {type(model).__name__}")


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Trainable and total parameters, counting shared (tied) tensors once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return {
        "trainable": sum(p.numel() for p in unique if p.requires_grad),
        "total": sum(p.numel() for p in unique),
    }


# --------------------------------------------------------------------------------------------------------
# Schedules and the Trainer.
# --------------------------------------------------------------------------------------------------------


def schedule_arguments(
    schedule: str, *, warmup_steps: int, total_steps: int, decay_ratio: float = 0.1, min_lr_ratio: float = 0.0
) -> dict[str, Any]:
    """TrainingArguments fields for a schedule, all of them transformers' own schedulers.

    - cosine: linear warm-up, then half a cosine down to `min_lr_ratio` × peak (the LEP / LT-Llama2 choice).
    - wsd: warm-up, constant, then the last `decay_ratio` of the steps decay with 1−√ (Hägele et al. 2024
      found it the best WSD cool-down); lets a run be extended without re-warming from a decayed LR.
    - constant: warm-up, then constant — with a checkpoint as start this is "constant with re-warm".
    """
    if warmup_steps >= total_steps:
        raise LangadaptError(
            f"warmup_steps ({warmup_steps}) ≥ total steps ({total_steps}): the LR would never reach its peak — "
            "lower cpt.warmup_steps or train longer"
        )
    args: dict[str, Any] = {"warmup_steps": warmup_steps}
    if schedule == "cosine":
        args.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": min_lr_ratio})
    elif schedule == "wsd":
        decay_steps = max(1, round(decay_ratio * total_steps))
        if warmup_steps + decay_steps > total_steps:
            raise LangadaptError(
                f"wsd: warmup_steps ({warmup_steps}) + decay steps ({decay_steps}) exceed the {total_steps} steps — "
                "lower warmup_steps or decay_ratio"
            )
        args.update(
            lr_scheduler_type="warmup_stable_decay",
            lr_scheduler_kwargs={"num_decay_steps": decay_steps, "min_lr_ratio": min_lr_ratio, "decay_type": "1-sqrt"},
        )
    elif schedule == "constant":
        args.update(lr_scheduler_type="constant_with_warmup", lr_scheduler_kwargs={})
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return args


class NonFiniteLoss(Exception):
    """The loss of a step is NaN or infinite (raised before that step updates any weight)."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss {value} at step {step}")
        self.step = step
        self.value = value


class TrainerExtras:
    """What langadapt adds to a transformers Trainer: `embedding_lr`, a stop on the first non-finite loss,
    trainable-only checkpoints, no usage telemetry. A mixin, so TRL's trainers take it too:
    `class X(TrainerExtras, SFTTrainer)`.

    The stock Trainer silently replaces a NaN loss in its logs (`logging_nan_inf_filter`) and keeps stepping,
    so a diverged run writes NaN checkpoints; here the step that produced it raises before the optimizer moves.
    """

    def __init__(
        self, *args: Any, embedding_lr: float | None = None, trainable_only_checkpoints: bool = False, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.embedding_lr = embedding_lr
        # Embeddings-only runs never change the body: checkpoints then hold just the trained tensors (an 8B
        # LEP checkpoint is ~1 GB of embeddings instead of 32 GB of fp32 weights) and resuming loads them
        # over the same base model. Switch it off before saving the final model.
        self.trainable_only_checkpoints = trainable_only_checkpoints

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if self.embedding_lr is not None:
            split_embedding_groups(optimizer, embedding_parameters(self.model), self.embedding_lr)
        return optimizer

    def _save(self, output_dir: str | None = None, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        if self.trainable_only_checkpoints and state_dict is None:  # None: a plain (not ZeRO-3/FSDP) save
            trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
            state_dict = {name: t for name, t in self.model.state_dict().items() if name in trainable}
        super()._save(output_dir, state_dict=state_dict)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        if not self.trainable_only_checkpoints:
            super()._issue_warnings_after_load(load_result)
            return
        trainable = {name for name, p in self.model.named_parameters() if p.requires_grad}
        missing = sorted(trainable & set(load_result.missing_keys))
        if missing:
            raise LangadaptError(f"the checkpoint lacks trained weights {missing[:3]} — delete the run's .work folder")

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteLoss(self.state.global_step + 1, float(loss))
        return loss

    def _send_telemetry(self) -> None:
        """TRL's trainers ping the hub with usage data unless told otherwise; langadapt never phones home."""


class LangadaptTrainer(TrainerExtras, Trainer):
    """transformers' Trainer with langadapt's extras (see `TrainerExtras`)."""


def split_embedding_groups(optimizer: torch.optim.Optimizer, embeddings: list[torch.nn.Parameter], lr: float) -> None:
    """Move `embeddings` into their own param groups (same weight decay) with learning rate `lr`.

    Done right after the Trainer built the optimizer (no state yet, scheduler not made), so the scheduler
    scales both learning rates alike. Idempotent.
    """
    embedding_ids = {id(p) for p in embeddings}
    groups = []
    for group in optimizer.param_groups:
        settings = {k: v for k, v in group.items() if k != "params"}
        body = [p for p in group["params"] if id(p) not in embedding_ids]
        embed = [p for p in group["params"] if id(p) in embedding_ids]
        groups += [{**settings, "params": body}] if body else []
        groups += [{**settings, "params": embed, "lr": lr}] if embed else []
    optimizer.param_groups = []
    for group in groups:
        optimizer.add_param_group(group)


# --------------------------------------------------------------------------------------------------------
# Checkpoints that resume exactly.
# --------------------------------------------------------------------------------------------------------


class CheckpointPolicy(TrainerCallback):
    """Mark complete checkpoints, and always checkpoint the last step.

    The marker is written after every rank has saved its part (a barrier), so a checkpoint folder without
    it was cut short and is never resumed from.
    """

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (folder / COMPLETE_MARKER).write_text(f"{state.global_step}\n")
        return control


def checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint in `folder` that every rank finished writing."""
    if not folder.is_dir():
        return None
    complete = [p for p in folder.iterdir() if checkpoint_step(p) is not None and (p / COMPLETE_MARKER).exists()]
    return max(complete, key=checkpoint_step, default=None)  # type: ignore[arg-type]


def remove_incomplete_checkpoints(folder: Path) -> list[str]:
    """Delete checkpoint folders a crash cut short (no marker); returns their names."""
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if checkpoint_step(path) is not None and not (path / COMPLETE_MARKER).exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
    if removed:
        log.warning("removed checkpoint(s) cut short by a crash: %s", ", ".join(sorted(removed)))
    return removed
