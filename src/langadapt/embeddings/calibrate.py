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
- `shared_direction` (`langadapt.embeddings.direction`): one vector d_g added to the rows of each group of
  new tokens, so the group's logits shift by h·d_g — an offset that depends on the context (the shared
  offset is one group with d = c·u).
"""

from __future__ import annotations

import logging
import math
from itertools import islice

import torch
import torch.nn.functional as F

from langadapt.embeddings.config import CalibrationConfig
from langadapt.embeddings.contexts import final_hidden
from langadapt.embeddings.direction import apply_shared_direction
from langadapt.embeddings.positions import ClassPositions, class_positions
from langadapt.embeddings.registry import InitInputs
from langadapt.embeddings.surgery import INPUT, OUTPUT, subtoken_mean

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
