"""Output-side calibration of new rows, after any init method (`embed.calibration`).

A new token's row is also its logit vector (the LM head's row, or the same row when tied). Two corrections:

- `norm`: each new output row is rescaled to the mean norm of its sub-tokens' rows — a mean of k rows is
  shorter than they are, which flattens the token's logits across contexts;
- `offset`: on English text (where the new tokens of a target language should not win), the logit of a new
  token must not exceed the logit of the first token of its old path, which is an upper bound of the path's
  probability: each row is moved along u = μ_h / |μ_h|² (μ_h = the original model's mean last hidden state on
  English, so h·u ≈ 1 for typical h) by the least shift that makes the cap hold at `quantile` of the English
  positions. u is nearly orthogonal to what varies between contexts, so the shift is close to a per-token
  logit bias (and, tied, a small change of the input row).
- `shared_offset`: one shift c·u for every new row, the c that maximises the likelihood of target and
  English documents read with the new tokenizer (hidden states frozen; convex in c, solved by bisection).
  After the sub-token mean the new tokens as a class take ~2/3 of the probability wherever the text goes on
  in the target language, also where the truth is an old token (measured on Russian UI strings: most of
  the out-of-domain regression); one parameter fitted on ~30k positions cannot overfit the corpus domain
  as per-token biases do.
- `shared_direction`: one vector d added to every new row, so the new tokens' class shifts by h·d — an
  offset that depends on the context (the shared offset is d = c·u). Its likelihood is a logistic
  regression of "the next token is new" on the hidden state, with the model's own class odds as offset:
  convex, solved by Newton, its L2 weight chosen on held-out documents. Tied, d also moves the input rows.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from langadapt.embeddings.config import CalibrationConfig
from langadapt.embeddings.contexts import final_hidden
from langadapt.embeddings.registry import InitInputs, Texts
from langadapt.embeddings.surgery import INPUT, OUTPUT, assemble_matrix, subtoken_mean

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger("langadapt.embed")


def english_hidden(inputs: InitInputs, options: CalibrationConfig) -> torch.Tensor | None:
    """The original model's last hidden states on English documents (old tokenizer), one row per position."""
    if inputs.model is None or inputs.english is None or inputs.old_tokenizer is None:
        return None
    documents = [t for t in islice(inputs.english(), options.english_documents) if t]
    if not documents:
        return None
    weight = inputs.matrices[INPUT]
    states = []
    with torch.no_grad():
        for start in range(0, len(documents), 8):
            encoded = inputs.old_tokenizer(documents[start:start + 8], add_special_tokens=False, truncation=True,
                                           max_length=options.max_length, padding=True, return_tensors="pt")
            mask = encoded["attention_mask"].bool()
            hidden = final_hidden(inputs.model, F.embedding(encoded["input_ids"], weight), mask)
            states.append(hidden[mask].float())
    return torch.cat(states)


def calibrate_output(
    inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig
) -> dict[str, object]:
    """Correct the output side of `rows` (as returned by a method) in place; returns figures for the manifest."""
    name = OUTPUT if OUTPUT in rows else INPUT
    out = rows[name]
    base = inputs.base_rows(name)
    fresh = inputs.new_ids
    report: dict[str, object] = {"matrix": name, "tied": OUTPUT not in rows}
    if options.norm and fresh:
        norms, found = subtoken_mean(base.norm(dim=1, keepdim=True), inputs.token_map, fresh)
        target = torch.where(found[:, None], norms, base.norm(dim=1).mean())
        scale = target[:, 0] / out.float().norm(dim=1).clamp_min(1e-12)
        out.mul_(scale[:, None].to(out.dtype))
        report["norm_scale_mean"] = round(float(scale.mean()), 4)
    if options.offset and fresh:
        hidden = english_hidden(inputs, options)
        if hidden is None:
            log.warning("calibration: no English text (or no model) — the logit offset is skipped")
            report["offset"] = "skipped: no English text"
            return report
        mu = hidden.mean(0)
        direction = mu / mu.pow(2).sum()
        first = torch.tensor([(inputs.token_map.decompositions.get(t) or [-1])[0] for t in fresh])
        has_first = first >= 0
        shifts = torch.zeros(len(fresh))
        along = hidden @ direction  # how much each position's logit moves per unit of shift (≈ 1)
        fixable = int((along > 0).sum())
        k = max(1, min(fixable, math.floor((1 - options.quantile) * fixable) + 1))
        for start in range(0, len(fresh), 1024):
            chunk = slice(start, start + 1024)
            excess = hidden @ (out[chunk].float() - base[first[chunk].clamp_min(0)]).T  # positions × tokens
            # The cap holds at a position for any shift <= its ratio; keep it at `quantile` of positions.
            # (Positions where the shift does not lower the logit, h·u <= 0, are left out: rare, and unfixable.)
            ratio = torch.where(along[:, None] > 0, -excess / along[:, None].clamp_min(1e-12), math.inf)
            shifts[chunk] = ratio.kthvalue(k, dim=0).values.clamp(max=0) * has_first[chunk]
        out.add_((shifts[:, None] * direction[None]).to(out.dtype))
        report.update({"offset_rows": int((shifts < 0).sum()), "offset_mean": round(float(shifts.mean()), 4),
                       "english_positions": len(hidden)})
    if options.shared_offset and fresh:
        report.update(apply_shared_offset(inputs, rows, options))
    if options.shared_direction and fresh:
        report.update(apply_shared_direction(inputs, rows, options))
    return report


@dataclass
class ClassPositions:
    """Per scored position: log-sum-exp of the old and of the new tokens' logits, the true token's logit,
    whether it is new, and a = h·u (how far the shared shift moves the new logits there)."""

    old_lse: torch.Tensor
    new_lse: torch.Tensor
    true_logit: torch.Tensor
    true_is_new: torch.Tensor
    along: torch.Tensor
    direction: torch.Tensor
    hidden: torch.Tensor  # (positions × hidden) float64, for the shared direction
    document: torch.Tensor  # the document each position is in

    def slope(self, c: float) -> float:
        """d NLL / dc: Σ a·(P(new) − [true token is new]) — zero at the best shared offset."""
        mass = torch.sigmoid(self.new_lse + c * self.along - self.old_lse)
        return float((self.along * (mass - self.true_is_new.double())).sum())

    def nll(self, c: float) -> float:
        return self.shifted_nll(c * self.along)

    def shifted_nll(self, shift: torch.Tensor, keep: torch.Tensor | None = None) -> float:
        """Σ NLL over the positions (the `keep` ones) with every new logit moved by `shift` at each position."""
        pick = slice(None) if keep is None else keep
        shifted = self.new_lse[pick] + shift
        true = self.true_logit[pick] + shift * self.true_is_new[pick]
        return float((torch.logaddexp(self.old_lse[pick], shifted) - true).sum())


def class_positions(inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig) -> ClassPositions:
    """Read target and English documents with the new tokenizer and rows; the statistics the fit needs."""
    shift = "shared_direction" if options.shared_direction else "shared_offset"
    inputs.need(f"calibration.{shift}", "model", "texts", "new_tokenizer")
    embed = assemble_matrix(inputs.base_rows(INPUT), inputs.token_map, rows[INPUT])  # float32+
    head = assemble_matrix(inputs.base_rows(OUTPUT), inputs.token_map, rows[OUTPUT]) if OUTPUT in rows else embed
    model_embed = embed.to(inputs.matrices[INPUT].dtype)  # what the body reads, in its own dtype
    is_new = torch.zeros(len(head), dtype=torch.bool)
    is_new[inputs.new_ids] = True
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
        head = head.float()
        for start in range(0, len(target), 256):  # one (256 × vocabulary) block of logits at a time
            logits = hidden_all[start:start + 256].float() @ head.T
            parts.append((torch.logsumexp(logits[:, ~is_new], -1), torch.logsumexp(logits[:, is_new], -1),
                          logits.gather(1, target[start:start + 256, None])[:, 0]))
        old_lse, new_lse, true_logit = (torch.cat(column).double() for column in zip(*parts, strict=True))
    return ClassPositions(old_lse, new_lse, true_logit, is_new[target], hidden_all @ direction, direction.float(),
                          hidden_all, torch.cat(document))


def best_shared_offset(positions: ClassPositions, bound: float = 16.0) -> float:
    """The c with zero slope (the NLL is convex in c), by bisection on [-bound, bound]."""
    low, high = -bound, bound
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if positions.slope(middle) < 0 else (low, middle)
    return (low + high) / 2


def apply_shared_offset(
    inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig
) -> dict[str, object]:
    positions = class_positions(inputs, rows, options)
    if not len(positions.along):
        log.warning("calibration: no target text to fit the shared offset on — skipped")
        return {"shared_offset": "skipped: no target text"}
    c = best_shared_offset(positions)
    name = OUTPUT if OUTPUT in rows else INPUT
    rows[name].add_((c * positions.direction).to(rows[name].dtype))
    n = len(positions.along)
    return {"shared_offset": round(c, 4), "shared_offset_positions": n,
            "new_token_share": round(float(positions.true_is_new.double().mean()), 4),
            "nll_per_position_before": round(positions.nll(0.0) / n, 4),
            "nll_per_position_after": round(positions.nll(c) / n, 4)}


L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # × n × the mean squared hidden-state entry (the data's scale)
HELD_OUT_EVERY = 5  # every 5th document scores the L2 weights


def fit_shared_direction(positions: ClassPositions, l2: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The d minimising Σ softplus(z) − [true is new]·z + l2·n·s²·|d|²/2, z = new_lse − old_lse + h·d: Newton
    steps, each halved until the objective falls (plain Newton diverges on nearly separable positions)."""
    keep = torch.ones(len(positions.along), dtype=torch.bool) if keep is None else keep
    x, y = positions.hidden[keep], positions.true_is_new[keep].double()
    odds = (positions.new_lse - positions.old_lse)[keep]
    weight = l2 * len(x) * float(x.pow(2).mean())

    def objective(d: torch.Tensor) -> float:
        z = odds + x @ d
        return float((F.softplus(z) - y * z).sum() + weight * d.pow(2).sum() / 2)

    d = torch.zeros(x.shape[1], dtype=x.dtype)
    current = objective(d)
    for _ in range(50):
        p = torch.sigmoid(odds + x @ d)
        gradient = x.T @ (p - y) + weight * d
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + weight * torch.eye(x.shape[1], dtype=x.dtype)
        step = torch.linalg.solve(hessian, gradient)
        for _ in range(30):
            candidate = objective(d - step)
            if candidate <= current:
                break
            step = step / 2
        else:
            break  # no step lowers the objective: at the optimum to machine precision
        d, improvement, current = d - step, current - candidate, candidate
        if improvement <= 1e-12 * (1 + abs(current)):
            break
    return d


def direction_nll(positions: ClassPositions, d: torch.Tensor | None, keep: torch.Tensor | None = None) -> float:
    """Mean NLL per position (of the `keep` ones) with the new tokens' logits moved by h·d (None: unmoved)."""
    hidden = positions.hidden if keep is None else positions.hidden[keep]
    shift = hidden @ d if d is not None else torch.zeros(len(hidden), dtype=hidden.dtype)
    return positions.shifted_nll(shift, keep) / max(1, len(hidden))


def choose_l2(positions: ClassPositions) -> tuple[float, dict[str, object]]:
    """The L2 weight of `L2_GRID` whose fit scores best on every `HELD_OUT_EVERY`th document, and the scores;
    the strongest weight when there are too few documents to hold any out."""
    held_out = positions.document % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    if not held_out.any() or held_out.all():
        log.warning("calibration: fewer than %d documents to fit the shared direction on — it uses the strongest "
                    "L2 weight (%g) instead of choosing one", HELD_OUT_EVERY, L2_GRID[-1])
        return L2_GRID[-1], {"held_out_nll_before": None, "held_out_nll_by_l2": None}
    scores = {l2: direction_nll(positions, fit_shared_direction(positions, l2, ~held_out), held_out) for l2 in L2_GRID}
    return min(scores, key=scores.__getitem__), {
        "held_out_nll_before": round(direction_nll(positions, None, held_out), 4),
        "held_out_nll_by_l2": {str(k): round(v, 4) for k, v in scores.items()}}


def apply_shared_direction(
    inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig
) -> dict[str, object]:
    """Fit d and add it to every new row; tied, refit `direction_passes` times on what the model then reads."""
    name = OUTPUT if OUTPUT in rows else INPUT
    passes = options.direction_passes if name == INPUT else 1  # untied, the hidden states do not move
    report: dict[str, object] = {}
    for done in range(passes):
        positions = class_positions(inputs, rows, options)
        if not len(positions.along):
            log.warning("calibration: no target text to fit the shared direction on — skipped")
            return {"shared_direction": "skipped: no target text"}
        before = direction_nll(positions, None)
        if done == 0:
            l2, chosen_by = choose_l2(positions)
            report.update({"shared_direction_l2": l2, "shared_direction_positions": len(positions.along), **chosen_by,
                           "nll_per_position_before": round(before, 4)})
        d = fit_shared_direction(positions, l2)
        rows[name].add_(d.to(rows[name].dtype))
        report.setdefault("shared_direction_norms", []).append(round(float(d.norm()), 4))
        report["nll_per_position_after"] = round(direction_nll(positions, d), 4)
        log.info("calibration: shared direction, pass %d (L2 %g): NLL %.4f -> %.4f per position on %d", done + 1, l2,
                 before, report["nll_per_position_after"], len(positions.along))
    return report


def _texts(texts: Texts) -> Iterator[str]:
    return (t for t in texts() if t)
