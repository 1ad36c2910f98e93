"""Instruction tuning and calibration (SFT) with TRL, on the lifecycle of `train.tuning`.

- `gather_sft_data`: instruction files + the copy task + self-calibration answers, as conversations.
- `tokenize_conversation`: the model's chat template, loss on assistant tokens only. Masks come from the
  character spans the template gives each answer (rendering the conversation turn by turn), mapped onto the
  tokens of the full text, so they are exact for any template — no `{% generation %}` markers needed.
- `fit_to_length`: an over-long conversation is cut after its last answer that fits, or dropped; an answer is
  never truncated (both are counted).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.instruct import Conversation, load_conversations, write_conversations
from langadapt.errors import LangadaptError
from langadapt.train.copy_task import copy_task_conversations
from langadapt.train.self_calibration import self_calibration_data
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

    from langadapt.train.config import SftConfig

log = logging.getLogger("langadapt.train.sft")

IGNORE = -100  # label of a token the loss skips


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
            raise LangadaptError(
                "the copy task needs a corpus — run it in a pipeline with a data stage, or pass --corpus"
            )
        copies, copy_stats = copy_task_conversations(
            corpus_texts(), count=task.count, sentence_share=task.sentence_share, language=language,
            seed=seed, min_chars=task.min_chars, max_sentence_chars=task.max_sentence_chars,
            max_paragraph_chars=task.max_paragraph_chars, instructions=task.instructions,
            continuation_share=task.continuation_share, continuation_instructions=task.continuation_instructions,
        )
        write_conversations(data_dir / "copy_task.jsonl", copies)
        conversations += copies
        stats["copy_task"] = {**copy_stats, "examples": len(copies)}
    if settings.self_calibration is not None:
        answers, calibration_stats = self_calibration_data(
            settings.self_calibration, language=language, original_model=original_model,
            trust_remote_code=trust_remote_code,
            out=data_dir / "self_calibration.jsonl", cache=cache_dir / "self_calibration.answers.jsonl",
        )
        conversations += answers
        stats["self_calibration"] = calibration_stats
    if not conversations:
        raise LangadaptError("no SFT example survived loading and filtering — see the counts above; add data")
    return conversations, stats


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


def train_sft(job: TuningJob, settings: SftConfig, *, language: str,
              corpus_texts: Callable[[], Iterable[str]] | None, original_model: str) -> dict[str, Any]:
    """A whole SFT job — gather its data (generated sets are written to `job.out/data`), train, export — as the
    pipeline stage and the `sft` verb both run it."""
    conversations, sources = gather_sft_data(
        settings, language=language, seed=job.seed, corpus_texts=corpus_texts, original_model=original_model,
        trust_remote_code=job.trust_remote_code, data_dir=job.out / "data", cache_dir=job.work,
    )
    return {"sources": sources, **run_sft(job, settings, conversations)}
