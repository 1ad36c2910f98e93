"""Bits per character / byte: the tokenizer-independent measure of how well a model predicts text.

Models with different tokenizers can only be compared per unit of *text*, never per token (a tokenizer
with longer tokens has a higher token perplexity for the same model quality). So every character of
every document is scored: each document is encoded without special tokens and preceded by one prefix
token (the tokenizer's BOS, else its EOS — lm-evaluation-harness' `prefix_token_id` convention), so its
first token is predicted too. The total negative log-likelihood is divided by the characters and by the
UTF-8 bytes of the documents, in bits. Each document's NLL, characters and bytes are kept too: the eval
task stores them, and its 95 % interval is a bootstrap over documents (`intervals.py`).

Documents longer than `max_length` tokens are scored with a sliding window: each window scores at most
`stride` new tokens and gives them the preceding `max_length - stride` (or more) tokens as context.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from langadapt.errors import LangadaptError
from langadapt.evaluate.intervals import ItemScores
from langadapt.evaluate.tasks import (
    EvalModel,
    EvalTask,
    TaskOutput,
    eval_task,
    eval_texts,
    unknown_eval_source,
)
from langadapt.schema import Section

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langadapt.config import RunConfig

log = logging.getLogger("langadapt.eval")


@dataclass(frozen=True)
class BpcResult:
    """Totals over a set of documents and the ratios derived from them."""

    documents: int
    characters: int
    bytes: int
    words: int
    tokens: int  # scored tokens = the documents' tokens (the prefix token is context only)
    nll_nats: float  # total negative log-likelihood, natural log
    document_nll: tuple[float, ...] = field(default=(), repr=False)  # per document, nats, in input order
    document_characters: tuple[int, ...] = field(default=(), repr=False)
    document_bytes: tuple[int, ...] = field(default=(), repr=False)

    @property
    def bits(self) -> float:
        return self.nll_nats / math.log(2)

    @property
    def bits_per_char(self) -> float:
        return self.bits / self.characters

    @property
    def bits_per_byte(self) -> float:
        return self.bits / self.bytes

    @property
    def token_perplexity(self) -> float:
        """exp(mean NLL per token): for reference only — not comparable across tokenizers."""
        return math.exp(self.nll_nats / self.tokens)

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / self.words if self.words else float("nan")

    @property
    def chars_per_token(self) -> float:
        return self.characters / self.tokens

    def to_dict(self, *, with_documents: bool = False) -> dict[str, Any]:
        totals = ("documents", "characters", "bytes", "words", "tokens", "nll_nats")
        ratios = ("bits_per_char", "bits_per_byte", "token_perplexity", "tokens_per_word", "chars_per_token")
        out = {
            **{name: getattr(self, name) for name in totals},
            **{name: round(getattr(self, name), 6) for name in ratios},
        }
        if with_documents:
            out["per_document"] = {"nll_nats": [round(v, 6) for v in self.document_nll],
                                   "characters": list(self.document_characters), "bytes": list(self.document_bytes)}
        return out


@dataclass(frozen=True)
class _Window:
    ids: list[int]
    first_scored: int  # index inside `ids` of the first token whose log-probability counts
    document: int = 0  # index of the document it scores


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token every document is conditioned on: BOS, else EOS (what lm-eval uses)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise LangadaptError("the tokenizer has neither a BOS nor an EOS token — cannot score a document's first token")


def sliding_windows(ids: list[int], max_length: int, stride: int) -> list[_Window]:
    """Split one encoded document (prefix included) into windows that together score ids[1:] once each."""
    if not 0 < stride < max_length:
        raise LangadaptError(f"stride must be between 1 and max_length - 1 ({max_length - 1}), got {stride}")
    end = min(max_length, len(ids))
    windows = [_Window(ids[:end], 1)]
    while end < len(ids):
        new_end = min(end + stride, len(ids))
        start = new_end - max_length
        windows.append(_Window(ids[start:new_end], end - start))
        end = new_end
    return windows


def bits_per_character(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    max_length: int = 1024,
    stride: int | None = None,
    batch_tokens: int | None = None,
) -> BpcResult:
    """Score `texts` with `model`; returns totals, bits/char, bits/byte and token perplexity.

    `stride` defaults to max_length // 2. `batch_tokens` bounds padded tokens per forward pass; the default
    keeps the float32 logits near 64 MiB (on CPU, bigger logit tensors are much slower, not faster: 24 Basque
    paragraphs on SmolLM2 took 18 s at 4096 tokens per batch and 2 s at 256).
    """
    import torch
    import torch.nn.functional as F

    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length) or max_length)
    stride = stride or max_length // 2
    vocab = int(model.config.get_text_config().vocab_size)
    batch_tokens = batch_tokens or max(64, 2**24 // vocab)
    prefix = prefix_token_id(tokenizer)

    words = tokens = 0
    chars: list[int] = []
    n_bytes: list[int] = []
    windows: list[_Window] = []
    batch: list[str] = []

    def encode(batch: list[str]) -> None:
        nonlocal tokens
        if not batch:
            return
        first = len(chars) - len(batch)
        for offset, ids in enumerate(tokenizer(batch, add_special_tokens=False)["input_ids"]):
            tokens += len(ids)
            windows.extend(_Window(w.ids, w.first_scored, first + offset)
                           for w in sliding_windows([prefix, *ids], max_length, stride))
        batch.clear()

    for text in texts:
        if not text:
            continue
        chars.append(len(text))
        n_bytes.append(len(text.encode("utf-8")))
        words += len(text.split())
        batch.append(text)
        if len(batch) >= 256:
            encode(batch)
    encode(batch)
    if tokens == 0:
        raise LangadaptError("no text to score — the evaluation texts are empty")

    device = next(model.parameters()).device
    windows.sort(key=lambda w: len(w.ids), reverse=True)
    nll = [0.0] * len(chars)
    start = 0
    with torch.inference_mode():
        while start < len(windows):
            width = len(windows[start].ids)
            rows = max(1, batch_tokens // width)
            chunk = windows[start : start + rows]
            start += len(chunk)
            input_ids = torch.zeros((len(chunk), width), dtype=torch.long)
            attention = torch.zeros_like(input_ids)
            labels = torch.full_like(input_ids, -100)
            for row, window in enumerate(chunk):
                n = len(window.ids)
                input_ids[row, :n] = torch.tensor(window.ids)
                attention[row, :n] = 1
                labels[row, window.first_scored : n] = input_ids[row, window.first_scored : n]
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            per_token = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                labels[:, 1:].reshape(-1).to(device),
                ignore_index=-100,
                reduction="none",
            )
            for window, window_nll in zip(chunk, per_token.view(len(chunk), -1).sum(-1).tolist(), strict=True):
                nll[window.document] += window_nll
            del logits
    return BpcResult(len(chars), sum(chars), sum(n_bytes), words, tokens, sum(nll), tuple(nll), tuple(chars),
                     tuple(n_bytes))


# --------------------------------------------------------------------------------------------------------
# The eval task: bits/char of every model on the data stage's held-out texts.
# --------------------------------------------------------------------------------------------------------


class BpcConfig(Section):
    """Bits per character on the data stage's held-out texts (`data.eval_sources`)."""

    sources: list[str] | None = Field(default=None, description="eval source names; default: all of them")
    max_texts: int | None = Field(default=None, ge=1, description="score the first N texts of each source")
    max_length: int = Field(default=1024, ge=8)
    stride: int | None = Field(default=None, ge=1, description="default: max_length // 2")


@dataclass(frozen=True)
class TextSet:
    """Held-out texts with their declared language (an eval source of the data stage)."""

    name: str
    language: str | None
    texts: list[str]


@eval_task
class BpcTask(EvalTask[BpcConfig, list[TextSet]]):
    key = "bpc"
    annotation = BpcConfig | None
    default = Field(default_factory=BpcConfig)

    def preflight(self, setting: BpcConfig, cfg: RunConfig) -> None:
        for name in setting.sources or []:
            problem = unknown_eval_source(cfg, name, "eval.bpc.sources")
            if problem:
                raise LangadaptError(problem)

    def read_inputs(self, setting: BpcConfig, cfg: RunConfig, data_dir: Path) -> list[TextSet]:
        sets = []
        for name in setting.sources or list(cfg.data.eval_sources):
            language = cfg.data.eval_sources[name].language
            sets.append(TextSet(name, language, eval_texts(data_dir, name, setting.max_texts, language=language)))
        return sets

    def run(self, setting: BpcConfig, inputs: list[TextSet], model: EvalModel) -> TaskOutput:
        out = TaskOutput({})
        for text_set in inputs:
            result = bits_per_character(model.model, model.tokenizer, text_set.texts, max_length=setting.max_length,
                                        stride=setting.stride)
            out.report[text_set.name] = {"language": text_set.language, **result.to_dict(with_documents=True)}
            out.headline[f"{text_set.name} bpc"] = round(result.bits_per_char, 4)
            out.headline[f"{text_set.name} tok/word"] = round(result.tokens_per_word, 4)
            log.info("%s: %s %.4f bits/char, %.3f tokens/word", model.spec.label, text_set.name,
                     result.bits_per_char, result.tokens_per_word)
        return out

    def item_scores(self, setting: BpcConfig, report: dict[str, Any]) -> dict[str, ItemScores]:
        """Each source's bits/char as Σ NLL / Σ characters over its documents (in bits)."""
        scores = {}
        for name, scored in report.items():
            documents = scored.get("per_document")
            if documents:
                scores[f"{name} bpc"] = ItemScores.ratio(documents["nll_nats"], documents["characters"],
                                                         scale=1 / math.log(2), lower_is_better=True)
        return scores
