"""The statistics the shared shifts are fitted on: target and English documents read with the new rows.

Per scored position, only what the class-level fits need: log-sum-exp of the old tokens' logits and of each
group of new tokens' logits, the true token's logit and group, and the hidden state. A shift of a group's
logits by s moves its log-sum-exp by s and leaves the distribution within the group as it is, so the NLL of
any shared shift is exact from these few numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from langadapt.embeddings.config import CalibrationConfig
from langadapt.embeddings.contexts import final_hidden
from langadapt.embeddings.registry import InitInputs, Texts
from langadapt.embeddings.surgery import INPUT, OUTPUT, assemble_matrix

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass
class ClassPositions:
    """Per scored position: log-sum-exp of the old tokens' logits and of each group of new tokens' logits, the
    true token's logit and group (-1: an old token), and a = h·u (how far the shared offset moves them)."""

    old_lse: torch.Tensor
    group_lse: torch.Tensor  # positions × groups
    true_logit: torch.Tensor
    true_group: torch.Tensor
    along: torch.Tensor
    direction: torch.Tensor
    hidden: torch.Tensor  # (positions × hidden) float64, for the shared direction
    document: torch.Tensor  # the document each position is in

    def subset(self, keep: torch.Tensor) -> ClassPositions:
        """The `keep` positions alone (copied once, for fits that evaluate them many times)."""
        return ClassPositions(self.old_lse[keep], self.group_lse[keep], self.true_logit[keep], self.true_group[keep],
                              self.along[keep], self.direction, self.hidden[keep], self.document[keep])

    @property
    def new_lse(self) -> torch.Tensor:
        return torch.logsumexp(self.group_lse, 1)

    @property
    def true_is_new(self) -> torch.Tensor:
        return self.true_group >= 0

    def slope(self, c: float) -> float:
        """d NLL / dc: Σ a·(P(new) − [true token is new]) — zero at the best shared offset."""
        mass = torch.sigmoid(self.new_lse + c * self.along - self.old_lse)
        return float((self.along * (mass - self.true_is_new.double())).sum())

    def nll(self, c: float) -> float:
        """Σ NLL with every new logit moved by the shared offset c·a."""
        return float(self.shifted_nll((c * self.along)[:, None]).sum())

    def shifted_nll(self, shift: torch.Tensor) -> torch.Tensor:
        """NLL per position with each group's new logits moved by `shift` (positions × groups, or × 1 for one
        shift of every new token); differentiable in `shift`."""
        shift = shift.expand(-1, self.group_lse.shape[1])
        true_shift = shift.gather(1, self.true_group.clamp_min(0)[:, None])[:, 0] * self.true_is_new
        lse = torch.logsumexp(torch.cat([self.old_lse[:, None], self.group_lse + shift], 1), 1)
        return lse - self.true_logit - true_shift


def class_positions(
    inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig, groups: torch.Tensor | None = None
) -> ClassPositions:
    """Read target and English documents with the new tokenizer and rows; the statistics the fit needs.
    `groups` labels each new token 0..G-1 (None: one group)."""
    shift = "shared_direction" if options.shared_direction else "shared_offset"
    inputs.need(f"calibration.{shift}", "model", "texts", "new_tokenizer")
    embed = assemble_matrix(inputs.base_rows(INPUT), inputs.token_map, rows[INPUT])  # float32+
    head = assemble_matrix(inputs.base_rows(OUTPUT), inputs.token_map, rows[OUTPUT]) if OUTPUT in rows else embed
    model_embed = embed.to(inputs.matrices[INPUT].dtype)  # what the body reads, in its own dtype
    new_ids = torch.tensor(inputs.new_ids, dtype=torch.long)
    labels = torch.zeros(len(new_ids), dtype=torch.long) if groups is None else groups
    group_of = torch.full((len(head),), -1, dtype=torch.long)
    group_of[new_ids] = labels
    documents = [*islice(_texts(inputs.texts), options.target_documents)]
    documents += [*islice(_texts(inputs.english), options.english_documents)] if inputs.english else []
    hidden, targets, document = [], [], []
    with torch.no_grad():
        for start in range(0, len(documents), 8):
            encoded = inputs.new_tokenizer(documents[start:start + 8], add_special_tokens=False, truncation=True,
                                           max_length=options.max_length, padding=True, return_tensors="pt")
            ids, mask = encoded["input_ids"], encoded["attention_mask"].bool()
            states = final_hidden(inputs.model, F.embedding(ids, model_embed), mask)
            scored = mask[:, 1:] & mask[:, :-1]  # predict each token from the ones before it
            hidden.append(states[:, :-1][scored].double())  # ~30k positions × hidden: small
            targets.append(ids[:, 1:][scored])
            document.append((start + torch.arange(len(ids)))[:, None].expand_as(scored)[scored])
        hidden_all, target = torch.cat(hidden), torch.cat(targets)
        mu = hidden_all.mean(0)
        direction = mu / mu.pow(2).sum()
        parts = []
        head, old = head.float(), group_of < 0
        for start in range(0, len(target), 256):  # one (256 × vocabulary) block of logits at a time
            logits = hidden_all[start:start + 256].float() @ head.T
            parts.append((torch.logsumexp(logits[:, old], -1).double(), group_logsumexp(logits[:, new_ids], labels),
                          logits.gather(1, target[start:start + 256, None])[:, 0].double()))
        old_lse, group_lse, true_logit = (torch.cat(column) for column in zip(*parts, strict=True))
    return ClassPositions(old_lse, group_lse, true_logit, group_of[target], hidden_all @ direction,
                          direction.float(), hidden_all, torch.cat(document))


def group_logsumexp(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(positions × tokens) logits → (positions × groups) log-sum-exp within each group, in float64."""
    top = logits.max(1, keepdim=True).values
    scaled = (logits - top).double().exp()
    sums = torch.zeros(len(logits), int(labels.max()) + 1, dtype=torch.float64).index_add_(1, labels, scaled)
    return sums.log() + top.double()


def _texts(texts: Texts) -> Iterator[str]:
    return (t for t in texts() if t)
