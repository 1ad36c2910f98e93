"""Real corpus contexts for the methods that run the model: snippets, their old-token paths, the teacher.

A snippet is a window of a document under the NEW tokenizer, preceded by the prefix token the bits/char
evaluation uses (BOS, else EOS). Its path is the same text spelled with OLD ids: a kept token is its old
id, a new token its `token_map` decomposition — so after student position i (new tokens) the teacher (the
original model on the path) is at `ends[i]`, and both have read exactly the same characters.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import torch

from langadapt.vocab.token_map import TokenMap

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Batch:
    student: torch.Tensor  # B × L new ids (0-padded)
    mask: torch.Tensor  # B × L, True on real tokens
    teacher: torch.Tensor  # B × LT old ids of the paths
    teacher_mask: torch.Tensor
    ends: torch.Tensor  # B × L: the teacher position aligned with each student position


def paths(token_map: TokenMap) -> list[list[int]]:
    """Old ids spelling each new id (empty for a new token without sub-tokens)."""
    return [[old] if old >= 0 else token_map.decompositions.get(new, []) for new, old in enumerate(token_map.old_ids)]


def snippets(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], *, length: int, count: int, prefix: int,
    spelled: list[list[int]], rng: random.Random, max_documents: int,
) -> list[list[int]]:
    """Up to `count` windows of `length` tokens (prefix included), at most one per document, from a random
    sample of the first `max_documents` documents; windows holding a token without a path are skipped."""
    documents = [t for t in islice(texts, max_documents) if t]
    rng.shuffle(documents)
    out: list[list[int]] = []
    for start in range(0, len(documents), 256):
        for ids in tokenizer(documents[start:start + 256], add_special_tokens=False)["input_ids"]:
            if len(ids) < 2:
                continue
            begin = rng.randrange(0, max(1, len(ids) - length + 2))
            window = [prefix, *ids[begin:begin + length - 1]]
            if all(spelled[i] for i in window):
                out.append(window)
            if len(out) >= count:
                return out
    return out


def make_batch(windows: list[list[int]], spelled: list[list[int]]) -> Batch:
    longest = max(len(w) for w in windows)
    paths_ = [[piece for i in w for piece in spelled[i]] for w in windows]
    longest_path = max(len(p) for p in paths_)
    student = torch.zeros(len(windows), longest, dtype=torch.long)
    teacher = torch.zeros(len(windows), longest_path, dtype=torch.long)
    ends = torch.zeros_like(student)
    for row, (window, path) in enumerate(zip(windows, paths_, strict=True)):
        student[row, : len(window)] = torch.tensor(window)
        teacher[row, : len(path)] = torch.tensor(path)
        lengths = torch.tensor([len(spelled[i]) for i in window])
        ends[row, : len(window)] = torch.cumsum(lengths, 0) - 1
    mask = torch.arange(longest)[None] < torch.tensor([len(w) for w in windows])[:, None]
    teacher_mask = torch.arange(longest_path)[None] < torch.tensor([len(p) for p in paths_])[:, None]
    return Batch(student, mask, teacher, teacher_mask, ends)


def final_hidden(model: PreTrainedModel, embeds: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The decoder's last hidden states (after its final norm): what the LM head multiplies."""
    return model.base_model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state


def at(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """states[b, positions[b, i]] for every b, i."""
    return states.gather(1, positions[..., None].expand(-1, -1, states.shape[-1]))


def frozen(model: PreTrainedModel) -> list[bool]:
    """Freeze every parameter; returns their previous flags for `restore`."""
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def restore(model: PreTrainedModel, flags: list[bool]) -> None:
    for p, flag in zip(model.parameters(), flags, strict=True):
        p.requires_grad_(flag)


def _logsumexp_rows(hidden: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(torch.cat([hidden @ weight.T for weight in weights], -1), -1)


def chunked_logsumexp(hidden: torch.Tensor, *weights: torch.Tensor, rows: int = 128) -> torch.Tensor:
    """logsumexp(hidden @ cat(weights).T, -1) for N × H hidden states, `rows` at a time and recomputed in the
    backward pass: one (rows × vocab) block of logits is alive at a time instead of N × vocab several
    times over (logits, log-softmax, their gradients), which dominated the `distill` method's memory. The
    vocabulary may come in parts (constant old rows, trained new rows): no whole matrix is built."""
    from torch.utils.checkpoint import checkpoint

    parts = [checkpoint(_logsumexp_rows, hidden[i : i + rows], *weights, use_reentrant=False)
             for i in range(0, len(hidden), rows)]
    return torch.cat(parts) if parts else hidden.new_zeros(0)
