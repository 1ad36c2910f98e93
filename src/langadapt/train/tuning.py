"""The tuning lifecycle SFT and DPO share: load a (possibly vocabulary-adapted) model for tuning, train it
with a TRL trainer that resumes from complete checkpoints, export one standalone, checked model folder.

- `load_for_tuning`: model + tokenizer checked to agree, a chat template where the model has none, LoRA on
  the body; when the vocabulary differs from the original model's, the input embeddings and the LM head
  train in full (one shared matrix when tied, so new tokens learn once and stay tied — LLaMA-Factory #6446).
- `make_trainer` / `train_resuming`: TRL's trainers with `common.TrainerExtras` and `CheckpointPolicy`;
  NaN/inf and OOM stop with one-line advice.
- `finish` / `export_in_memory`: adapter saved beside, merged, generation stops on the chat template's end
  token, `check.assert_model_folder` verifies — never "base + adapter + resize recipe".
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError
from langadapt.train.check import CheckReport, assert_model_folder, chat_end_token, token_id_list
from langadapt.train.common import (
    CheckpointPolicy,
    TrainerExtras,
    add_lora,
    checkpoint_step,
    count_parameters,
    device_flags,
    last_complete_checkpoint,
    load_model_for_training,
    precision_flags,
    remove_incomplete_checkpoints,
    without_stale_deprecations,
)
from langadapt.train.progress import ThroughputProgress, friendly_training_errors, loss_curve, oom_advice

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.data.instruct import Conversation
    from langadapt.train.config import TuningConfig

log = logging.getLogger("langadapt.train")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


@dataclass
class TuningJob:
    """One SFT or DPO run: the model to train, where to write, and the vocabulary it started from."""

    model: str  # model folder or reference
    tokenizer: str  # tokenizer folder or reference (the model's own, unless the base model lacks one)
    original_tokenizer: str  # the vocabulary before adaptation: decides whether embeddings must train
    out: Path  # receives model/ and adapter/
    work: Path  # checkpoints; a re-run with the same work folder resumes
    seed: int = 42
    trust_remote_code: bool = False
    extra_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    snapshot: dict[str, Any]  # new-token rows before training
    facts: dict[str, Any]


def load_for_tuning(job: TuningJob, settings: TuningConfig) -> PreparedModel:
    """Load model + tokenizer, check they agree, give it a chat template, wrap it for training."""
    from langadapt.models import load_tokenizer

    tokenizer = load_tokenizer(job.tokenizer, trust_remote_code=job.trust_remote_code)
    model = load_model_for_training(job.model, trust_remote_code=job.trust_remote_code)
    check_vocab_match(model, tokenizer, job.tokenizer)
    added = ensure_chat_template(model, tokenizer, settings.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    original = load_tokenizer(job.original_tokenizer, trust_remote_code=job.trust_remote_code)
    new = new_token_ids(tokenizer, original)
    train_embeddings = settings.mode == "full" or resolve_train_embeddings(settings, bool(new))
    snapshot = row_snapshot(model, new)
    wrapped = prepare_model(model, settings, train_embeddings=train_embeddings)
    facts = {
        "mode": settings.mode, "train_embeddings": train_embeddings,
        "new_tokens": len(new), "chat_tokens_added": added,
        "trainable_parameters": count_parameters(wrapped)["trainable"],
    }
    log.info("%s: %s, %d new tokens, train embeddings: %s, %d trainable parameters", job.model, settings.mode,
             len(new), train_embeddings, facts["trainable_parameters"])
    return PreparedModel(wrapped, tokenizer, snapshot, facts)


def check_vocab_match(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    """A tokenizer with ids beyond the embedding matrix belongs to another model (padding rows are fine)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise LangadaptError(
            f"the tokenizer of '{where}' has {len(tokenizer)} tokens but the model has {rows} embedding rows — "
            "they come from different vocabularies; train the model folder written with its tokenizer"
        )


def ensure_chat_template(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, setting: str | None) -> list[str]:
    """Give a model without a chat template the configured one; returns the tokens that had to be added."""
    if getattr(tokenizer, "chat_template", None):
        return []
    if setting is None:
        raise LangadaptError(
            "the model has no chat template — set chat_template: chatml (or a .jinja file) in the sft/dpo section"
        )
    if setting == "chatml":
        template, needed = CHATML_TEMPLATE, CHATML_TOKENS
    else:
        path = Path(setting)
        if not path.is_file():
            raise LangadaptError(f"chat_template '{setting}' is neither 'chatml' nor an existing .jinja file")
        template, needed = path.read_text(encoding="utf-8"), []
    missing = [token for token in needed if token not in tokenizer.get_vocab()]
    if missing:
        # Control tokens are special (never split, hidden by skip_special_tokens); new rows start at the mean.
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    tokenizer.chat_template = template
    return missing


def new_token_ids(tokenizer: PreTrainedTokenizerBase, original: PreTrainedTokenizerBase) -> list[int]:
    """Ids of the tokens the original vocabulary lacks (all of them for a replaced vocabulary)."""
    old = original.get_vocab()
    return sorted(i for token, i in tokenizer.get_vocab().items() if token not in old)


def resolve_train_embeddings(settings: TuningConfig, changed_vocab: bool) -> bool:
    """`lora.train_embeddings`: auto = train them whenever the vocabulary is not the original one."""
    setting = settings.lora.train_embeddings
    if setting == "auto":
        return changed_vocab
    if changed_vocab and not setting and settings.mode == "lora":
        log.warning("the vocabulary was changed but lora.train_embeddings is false: new token rows will not learn")
    return setting


def prepare_model(model: PreTrainedModel, settings: TuningConfig, *, train_embeddings: bool) -> torch.nn.Module:
    """The model to train: LoRA-wrapped (mode lora) or as is with every weight trainable (mode full)."""
    if settings.mode == "full":
        model.requires_grad_(True)
        return model
    return add_lora(model, settings.lora, train_embeddings=train_embeddings, layers=settings.lora.layers)


def render(tokenizer: PreTrainedTokenizerBase, messages: Conversation, *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def training_arguments(settings: TuningConfig, output_dir: Path, seed: int) -> dict[str, Any]:
    """The TrainingArguments fields shared by SFTConfig and DPOConfig."""
    schedules = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": schedules[settings.schedule],
        "warmup_steps": settings.warmup_steps,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps or -1,
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "activation_checkpointing": settings.gradient_checkpointing,  # TRL would default it to on
        "report_to": "none",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        **precision_flags(settings.precision),
        **device_flags(world_size=1),
    }


def make_trainer(base: type, embedding_lr: float | None, **kwargs: Any) -> Any:
    """A TRL trainer (`base`: SFTTrainer, DPOTrainer) with langadapt's `TrainerExtras`, checkpoints marked
    complete by `CheckpointPolicy`, and progress lines through langadapt's logger."""
    from transformers import PrinterCallback

    cls = type(f"Langadapt{base.__name__}", (TrainerExtras, base), {})
    trainer = cls(embedding_lr=embedding_lr, callbacks=[CheckpointPolicy()], **kwargs)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(ThroughputProgress(tokens_per_step=None, logger=log))
    return trainer


def train_resuming(trainer: Any, settings: TuningConfig) -> int:
    """Train, resuming from the newest complete checkpoint (never from one a crash cut short); a diverged
    loss or running out of memory becomes a one-line error. Returns the step it resumed from (0: none)."""
    checkpoints = Path(trainer.args.output_dir)
    remove_incomplete_checkpoints(checkpoints)
    resume = last_complete_checkpoint(checkpoints)
    if resume is not None:
        log.info("resuming from %s", resume)
    with (friendly_training_errors(checkpoints, oom_hint=oom_advice(settings, context_length=settings.max_length)),
          without_stale_deprecations()):
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return checkpoint_step(resume) if resume else 0


def training_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The loss curve (as cpt records it, see `progress.loss_curve`), its first and last losses, the run's time."""
    curve = loss_curve(history)
    summary: dict[str, Any] = {"loss_curve": curve}
    if curve:
        summary.update(first_loss=curve[0]["loss"], last_loss=curve[-1]["loss"])
    final = next((e for e in reversed(history) if "train_runtime" in e), {})
    summary.update(train_seconds=final.get("train_runtime"), train_loss=final.get("train_loss"))
    return summary


def finish(job: TuningJob, trainer: Any, prepared: PreparedModel, metrics: dict[str, Any]) -> dict[str, Any]:
    """Export the trained model and collect the metrics both SFT and DPO report."""
    curve = training_summary(trainer.state.log_history)
    model = trainer.model
    changed = rows_changed(prepared.snapshot, model)
    report = export_in_memory(
        model, prepared.tokenizer, job.out, base=job.model, trust_remote_code=job.trust_remote_code
    )
    summary = {"steps": trainer.state.global_step, "examples": metrics.get("data", {}).get("examples", 0)}
    if "last_loss" in curve:
        summary["last loss"] = round(curve["last_loss"], 4)
    if "new_embed_rows_changed" in changed:
        summary["new rows changed"] = changed["new_embed_rows_changed"]
    return {**metrics, **job.extra_metrics, **prepared.facts, **curve, **changed, "check": report.facts,
            "summary": summary}


def align_generation_eos(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Make generation stop on the tokenizer's EOS and on the chat template's end-of-turn token."""
    ids = token_id_list(model.generation_config.eos_token_id)
    extra = [tokenizer.eos_token_id]
    if getattr(tokenizer, "chat_template", None):
        end = chat_end_token(tokenizer)
        extra.append(end if isinstance(end, int) else None)
    for token_id in extra:
        if token_id is not None and token_id not in ids:
            ids.append(int(token_id))
    model.generation_config.eos_token_id = ids[0] if len(ids) == 1 else ids
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[0]
    return ids


def export_in_memory(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, out: Path, *, base: str, trust_remote_code: bool = False
) -> CheckReport:
    """Write the trained model as it is in memory to `out/model` (merged, standalone, checked) and, for a LoRA
    model, `out/adapter` beside it. (CPT reloads its saved weights instead: `cpt.export_from_folder`.)"""
    from peft import PeftModel

    from langadapt.models import save_model_folder

    if isinstance(model, PeftModel):
        adapter = out / "adapter"
        model.save_pretrained(adapter)
        rows = model.get_input_embeddings().weight.shape[0]
        (adapter / "LANGADAPT.json").write_text(json.dumps({
            "base_model": base, "vocab_size": rows,
            "note": "loads onto exactly this base folder (same vocabulary); serve the merged model in ../model — "
                    "servers such as vLLM refuse adapters with modules_to_save",
        }, indent=2) + "\n")
        model = model.merge_and_unload()
    model.config.use_cache = True
    align_generation_eos(model, tokenizer)
    save_model_folder(model, tokenizer, out / "model")
    return assert_model_folder(out / "model", trust_remote_code=trust_remote_code, require_chat_template=True)


def row_snapshot(model: torch.nn.Module, ids: list[int], limit: int = 1024) -> dict[str, torch.Tensor]:
    """Copies of (at most `limit` of) the embedding and head rows `ids`, to measure what training changed."""
    import torch

    sample = ids[:: max(1, math.ceil(len(ids) / limit))] if ids else []
    snapshot = {"ids": torch.tensor(sample, dtype=torch.long)}
    for name, module in (("embed", model.get_input_embeddings()), ("head", model.get_output_embeddings())):
        if module is not None and sample:
            snapshot[name] = module.weight.detach()[snapshot["ids"]].float().clone()
    return snapshot


def rows_changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, float]:
    """Share of the snapshot rows that moved, and their mean relative change
    (rows that never move: a known LoRA-after-resize failure)."""
    result: dict[str, float] = {}
    if before["ids"].numel() == 0:
        return result
    for name, module in (("embed", model.get_input_embeddings()), ("head", model.get_output_embeddings())):
        if name not in before or module is None:
            continue
        after = module.weight.detach()[before["ids"]].float()
        delta = (after - before[name]).norm(dim=-1)
        result[f"new_{name}_rows_changed"] = float((delta > 0).float().mean())
        result[f"new_{name}_rows_relative_change"] = float((delta / before[name].norm(dim=-1).clamp_min(1e-12)).mean())
    return result
