"""Instruction tuning and calibration (SFT) with TRL, and the resize-safe LoRA lifecycle SFT and DPO share.

The pieces, in the order a run uses them:

- `gather_sft_data`: instruction files + the copy task + self-calibration answers, as conversations.
- `tokenize_conversation`: the model's chat template, loss on assistant tokens only. Masks come from the
  character spans the template gives each answer (rendering the conversation turn by turn), mapped onto the
  tokens of the full text, so they are exact for any template — no `{% generation %}` markers needed.
- `fit_to_length`: an over-long conversation is cut after its last answer that fits, or dropped; an answer is
  never truncated (both are counted).
- `prepare_model`: LoRA on the body; when the vocabulary differs from the original model's, the input
  embeddings and the LM head train in full (`modules_to_save`; one shared matrix when tied, so new tokens
  learn once and stay tied — the LLaMA-Factory #6446 failure).
- `make_trainer`, `train_resuming`: TRL's trainers with `common.TrainerExtras` and `common.CheckpointPolicy`,
  as CPT's; a re-run resumes from the last complete checkpoint; NaN/inf and OOM stop with one-line advice.
- `export_in_memory`: the adapter is saved beside the model, merged, the generation config is made to stop on
  the chat template's end token, the full model is saved, and `check.assert_model_folder` verifies it.
  What leaves a stage is always a standalone model folder, never "base + adapter + resize recipe".
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.instruct import (
    Conversation,
    Judge,
    copy_task_conversations,
    filter_answers,
    generate_answers,
    load_conversations,
    load_prompts,
    write_conversations,
)
from langadapt.errors import LangadaptError
from langadapt.train.check import CheckReport, assert_model_folder, chat_end_token, token_id_list
from langadapt.train.common import (
    CheckpointPolicy,
    ThroughputProgress,
    TrainerExtras,
    add_lora,
    checkpoint_step,
    count_parameters,
    device_flags,
    friendly_training_errors,
    last_complete_checkpoint,
    load_model_for_training,
    loss_curve,
    oom_advice,
    precision_flags,
    remove_incomplete_checkpoints,
    without_stale_deprecations,
)

if TYPE_CHECKING:
    import torch
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.train.config import SftConfig, TuningConfig

log = logging.getLogger("langadapt.train.sft")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]
IGNORE = -100  # label of a token the loss skips


# --------------------------------------------------------------------------------------------------------
# Training data.
# --------------------------------------------------------------------------------------------------------


def gather_sft_data(
    settings: SftConfig,
    *,
    language: str,
    seed: int,
    corpus_texts: Callable[[], Iterable[str]] | None,
    original_model: str,
    trust_remote_code: bool,
    data_dir: Path,
    cache_dir: Path,
) -> tuple[list[Conversation], dict[str, Any]]:
    """All SFT conversations of a config, and what each source contributed.

    `corpus_texts()` streams the corpus for the copy task; `original_model` answers the self-calibration
    prompts. Generated sets are written to `data_dir` (the stage folder) so they can be inspected and reused.
    """
    conversations: list[Conversation] = []
    stats: dict[str, Any] = {}
    if settings.data:
        loaded, report = load_conversations(settings.data)
        conversations += loaded
        stats["files"] = {**report.to_dict(), "examples": len(loaded)}
    if settings.copy_task is not None:
        task = settings.copy_task
        if corpus_texts is None:
            raise LangadaptError("the copy task needs a corpus — run it in a pipeline with a data stage, or pass --corpus")
        copies, copy_stats = copy_task_conversations(
            corpus_texts(), count=task.count, sentence_share=task.sentence_share, language=language,
            seed=seed, min_chars=task.min_chars, max_sentence_chars=task.max_sentence_chars,
            max_paragraph_chars=task.max_paragraph_chars, instructions=task.instructions,
        )
        write_conversations(data_dir / "copy_task.jsonl", copies)
        conversations += copies
        stats["copy_task"] = {**copy_stats, "examples": len(copies)}
    if settings.self_calibration is not None:
        answers, calibration_stats = self_calibration_data(
            settings, language=language, original_model=original_model, trust_remote_code=trust_remote_code,
            out=data_dir / "self_calibration.jsonl", cache=cache_dir / "self_calibration.answers.jsonl",
        )
        conversations += answers
        stats["self_calibration"] = calibration_stats
    if not conversations:
        raise LangadaptError("no SFT example survived loading and filtering — see the counts above; add data")
    return conversations, stats


def self_calibration_data(
    settings: SftConfig, *, language: str, original_model: str, trust_remote_code: bool, out: Path, cache: Path
) -> tuple[list[Conversation], dict[str, Any]]:
    """The original model's greedy answers to the prompts, filtered, saved to `out` as a chat-format file."""
    from langadapt.models import load_model, load_tokenizer

    calibration = settings.self_calibration
    assert calibration is not None
    judge = Judge(calibration.judge, language) if calibration.judge is not None else None  # fails early on no key
    prompts = load_prompts(calibration.prompts)[: calibration.count]
    log.info("self-calibration: %s answers %d prompts", original_model, len(prompts))
    model = load_model(original_model, dtype=generation_dtype(), trust_remote_code=trust_remote_code)
    model = model.to(generation_device()).eval()
    tokenizer = load_tokenizer(original_model, trust_remote_code=trust_remote_code)
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=calibration.max_new_tokens,
                               batch_size=calibration.batch_size, cache=cache)
    del model
    kept, scores, report = filter_answers(
        answers, min_chars=calibration.min_chars, max_chars=calibration.max_chars,
        drop_unfinished=calibration.drop_unfinished, language=language if calibration.language_filter else None,
        min_language_confidence=calibration.min_language_confidence, judge=judge,
    )
    for reason, count in sorted(report.dropped.items()):
        log.warning("self-calibration dropped %d of %d answers: %s", count, len(answers), reason.replace("_", " "))
    conversations = [[*a.prompt, {"role": "assistant", "content": a.answer}] for a in kept]
    write_conversations(out, conversations, ({"judge_score": s} if s is not None else {} for s in scores))
    return conversations, {"prompts": len(prompts), **report.to_dict(), "examples": len(conversations)}


def generation_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def generation_dtype() -> str:
    """bf16 where the GPU has it (half the memory, same greedy answers in practice), fp32 elsewhere."""
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


# --------------------------------------------------------------------------------------------------------
# Tokenization: the chat template, loss on the answers only, no answer ever truncated.
# --------------------------------------------------------------------------------------------------------


def render(tokenizer: PreTrainedTokenizerBase, messages: Conversation, *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


@dataclass(frozen=True)
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]  # the token on assistant tokens, IGNORE elsewhere
    answer_ends: list[int]  # token index just past each answer: where the sequence may be cut


def answer_spans(tokenizer: PreTrainedTokenizerBase, messages: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (its text and end token).

    Turn i's span starts where the template's generation prompt for it ends and stops where the rendering
    through turn i ends (trailing white space excluded: the model stops at the end token, not after it).
    """
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True)
        through = render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise LangadaptError(
                "the chat template renders earlier turns differently once later turns follow, so answers cannot "
                "be located — use a template whose renderings of a conversation's prefixes are prefixes of it"
            )
        spans.append((len(before), len(through.rstrip())))
    return text, spans


def tokenize_conversation(tokenizer: PreTrainedTokenizerBase, messages: Conversation) -> TokenizedConversation:
    """Token ids of the rendered conversation, with labels on the tokens that start inside an answer span."""
    text, spans = answer_spans(tokenizer, messages)
    try:
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise LangadaptError("the tokenizer has no offset mapping (a slow tokenizer) — save it as a fast one") from None
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    labels = [IGNORE] * len(ids)
    ends = []
    for start, end in spans:
        last = None
        for k, (token_start, _) in enumerate(offsets):
            if start <= token_start < end:
                labels[k] = ids[k]
                last = k
        if last is not None:
            ends.append(last + 1)
    return TokenizedConversation(ids, labels, ends)


def fit_to_length(example: TokenizedConversation, max_length: int) -> tuple[list[int], list[int]] | None:
    """The example, or its prefix through the last answer that fits, or None when even the first does not fit."""
    if len(example.input_ids) <= max_length:
        return example.input_ids, example.labels
    cut = max((end for end in example.answer_ends if end <= max_length), default=None)
    if cut is None:
        return None
    return example.input_ids[:cut], example.labels[:cut]


def build_sft_dataset(
    tokenizer: PreTrainedTokenizerBase, conversations: list[Conversation], max_length: int
) -> tuple[Dataset, dict[str, int]]:
    """A tokenized dataset (`input_ids`, `labels`) and the counts of what was dropped or shortened."""
    from datasets import Dataset

    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
    counts: Counter[str] = Counter()
    for conversation in conversations:
        example = tokenize_conversation(tokenizer, conversation)
        fitted = fit_to_length(example, max_length)
        if fitted is None:
            counts["dropped_too_long"] += 1
            continue
        if example.answer_ends and len(fitted[0]) < example.answer_ends[-1]:  # an answer was cut away
            counts["shortened_to_last_fitting_answer"] += 1
        if all(label == IGNORE for label in fitted[1]):
            counts["dropped_no_answer_tokens"] += 1
            continue
        rows["input_ids"].append(fitted[0])
        rows["labels"].append(fitted[1])
        counts["tokens"] += len(fitted[0])
        counts["answer_tokens"] += sum(label != IGNORE for label in fitted[1])
    for reason in ("dropped_too_long", "shortened_to_last_fitting_answer", "dropped_no_answer_tokens"):
        if counts[reason]:
            log.warning("%d of %d conversations %s (max_length %d)", counts[reason], len(conversations),
                        reason.replace("_", " "), max_length)
    if not rows["input_ids"]:
        raise LangadaptError(f"no conversation fits max_length {max_length} tokens — raise max_length")
    counts["examples"] = len(rows["input_ids"])
    return Dataset.from_dict(rows), dict(counts)


# --------------------------------------------------------------------------------------------------------
# The model: vocabulary agreement, chat template, LoRA with resize-safe embeddings.
# --------------------------------------------------------------------------------------------------------


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


def prepare_model(model: PreTrainedModel, settings: TuningConfig, *, train_embeddings: bool) -> torch.nn.Module:
    """The model to train: LoRA-wrapped (mode lora) or as is with every weight trainable (mode full)."""
    if settings.mode == "full":
        model.requires_grad_(True)
        return model
    return add_lora(model, settings.lora, train_embeddings=train_embeddings, layers=settings.lora.layers)


def resolve_train_embeddings(settings: TuningConfig, changed_vocab: bool) -> bool:
    """`lora.train_embeddings`: auto = train them whenever the vocabulary is not the original one."""
    setting = settings.lora.train_embeddings
    if setting == "auto":
        return changed_vocab
    if changed_vocab and not setting and settings.mode == "lora":
        log.warning("the vocabulary was changed but lora.train_embeddings is false: new token rows will not learn")
    return setting


# --------------------------------------------------------------------------------------------------------
# The trainer.
# --------------------------------------------------------------------------------------------------------


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


def training_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The loss curve (as cpt records it, see `common.loss_curve`), its first and last losses, the run's time."""
    curve = loss_curve(history)
    summary: dict[str, Any] = {"loss_curve": curve}
    if curve:
        summary.update(first_loss=curve[0]["loss"], last_loss=curve[-1]["loss"])
    final = next((e for e in reversed(history) if "train_runtime" in e), {})
    summary.update(train_seconds=final.get("train_runtime"), train_loss=final.get("train_loss"))
    return summary


# --------------------------------------------------------------------------------------------------------
# Export: adapter beside, merged standalone model, checked.
# --------------------------------------------------------------------------------------------------------


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
    """Share of the snapshot rows that moved, and their mean relative change (rows that never move: a known LoRA-after-resize failure)."""
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


# --------------------------------------------------------------------------------------------------------
# A whole SFT run.
# --------------------------------------------------------------------------------------------------------


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
        "new_tokens": len(new), "chat_tokens_added": added, "trainable_parameters": count_parameters(wrapped)["trainable"],
    }
    log.info("%s: %s, %d new tokens, train embeddings: %s, %d trainable parameters", job.model, settings.mode,
             len(new), train_embeddings, facts["trainable_parameters"])
    return PreparedModel(wrapped, tokenizer, snapshot, facts)


def run_sft(job: TuningJob, settings: SftConfig, conversations: list[Conversation]) -> dict[str, Any]:
    """Train on `conversations`, then export; returns the metrics for the manifest."""
    from trl import SFTConfig, SFTTrainer

    prepared = load_for_tuning(job, settings)
    dataset, data_stats = build_sft_dataset(prepared.tokenizer, conversations, settings.max_length)
    # max_length=None: build_sft_dataset already fitted every example, TRL must not truncate any further.
    args = SFTConfig(**training_arguments(settings, job.work / "checkpoints", job.seed), max_length=None)
    trainer = make_trainer(SFTTrainer, settings.embedding_lr, model=prepared.model, args=args, train_dataset=dataset,
                           processing_class=prepared.tokenizer)
    resumed = train_resuming(trainer, settings)
    return finish(job, trainer, prepared, {"data": data_stats, "resumed_from_step": resumed})


def finish(job: TuningJob, trainer: Any, prepared: PreparedModel, metrics: dict[str, Any]) -> dict[str, Any]:
    """Export the trained model and collect the metrics both SFT and DPO report."""
    curve = training_summary(trainer.state.log_history)
    model = trainer.model
    changed = rows_changed(prepared.snapshot, model)
    report = export_in_memory(model, prepared.tokenizer, job.out, base=job.model, trust_remote_code=job.trust_remote_code)
    summary = {"steps": trainer.state.global_step, "examples": metrics.get("data", {}).get("examples", 0)}
    if "last_loss" in curve:
        summary["last loss"] = round(curve["last_loss"], 4)
    if "new_embed_rows_changed" in changed:
        summary["new rows changed"] = changed["new_embed_rows_changed"]
    return {**metrics, **job.extra_metrics, **prepared.facts, **curve, **changed, "check": report.facts,
            "summary": summary}
