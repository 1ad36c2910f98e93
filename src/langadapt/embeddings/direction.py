"""`embed.calibration.shared_direction`: a context-dependent class offset for the new tokens.

After the sub-token mean, the new tokens as a class are about as likely where the text goes on with an old
token as where it goes on with a new one. Adding one vector d to every new row moves the new tokens' logits
by h·d at a position with hidden state h: an offset that depends on the context (after an English word, a
Russian word, the middle of a word).

Optionally the new tokens are split into groups with a d_g each: word-initial vs continuation tokens
(`direction_word_start`: `Ġ…`/`▁…` or not) and/or `direction_clusters` clusters of similar rows (spherical
k-means on the method's rows). A direction per token would be per-token biases, which fit the corpus domain
and lose out of it; groups sit in between, and measured they do too: more groups win in domain and lose
out of it (`docs/benchmarks.md`), so the default is one direction.

The fit is a multinomial logistic regression of "which group, if any, the next token is in" on h, with the
model's own group log-odds as offsets: convex, solved by L-BFGS, its L2 weight chosen on held-out documents.
Tied, d also moves the input rows, so it is refitted on what the model then reads (`direction_passes`).
"""

from __future__ import annotations

import logging

import torch

from langadapt.embeddings.config import CalibrationConfig
from langadapt.embeddings.positions import ClassPositions, class_positions
from langadapt.embeddings.registry import InitInputs
from langadapt.embeddings.surgery import INPUT, OUTPUT

log = logging.getLogger("langadapt.embed")

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # × the mean squared hidden entry, per position
HELD_OUT_EVERY = 5  # every 5th document scores the L2 weights
WORD_MARKERS = ("Ġ", "▁")  # a space before the token: byte-level BPE and SentencePiece


def token_groups(inputs: InitInputs, rows: torch.Tensor, by_word_start: bool, clusters: int) -> torch.Tensor:
    """A group 0..G-1 per new token: word-initial or not (when `by_word_start`), × `clusters` spherical
    k-means clusters of `rows` (seeded: the same rows give the same groups); empty groups dropped."""
    side = torch.zeros(len(inputs.new_ids), dtype=torch.long)
    if by_word_start:
        inputs.need("calibration.shared_direction", "new_tokenizer")
        strings = inputs.new_tokenizer.convert_ids_to_tokens(inputs.new_ids)
        side = torch.tensor([s.startswith(WORD_MARKERS) for s in strings], dtype=torch.long)
    labels = side * clusters
    for value in (0, 1):
        members = (side == value).nonzero()[:, 0]
        if clusters > 1 and len(members):
            labels[members] += spherical_kmeans(rows[members].double(), min(clusters, len(members)))
    return torch.unique(labels, return_inverse=True)[1]


def spherical_kmeans(rows: torch.Tensor, k: int, iterations: int = 30) -> torch.Tensor:
    """Cluster labels of `rows` by cosine; centroids start at k rows drawn with a fixed seed."""
    unit = torch.nn.functional.normalize(rows, dim=1)
    start = torch.randperm(len(unit), generator=torch.Generator().manual_seed(0))[:k]
    centroids = unit[start]
    labels = torch.zeros(len(unit), dtype=torch.long)
    for _ in range(iterations):
        labels = (unit @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, labels, unit)
        filled = sums.norm(dim=1) > 0
        centroids = torch.where(filled[:, None], torch.nn.functional.normalize(sums, dim=1), centroids)
    return labels


def l2_weight(positions: ClassPositions, l2: float) -> float:
    """The L2 weight per position: l2 × the mean squared hidden-state entry (the data's scale)."""
    return l2 * float(positions.hidden.pow(2).mean())


def fit_shared_direction(
    positions: ClassPositions, l2: float, keep: torch.Tensor | None = None, start: torch.Tensor | None = None
) -> torch.Tensor:
    """The (groups × hidden) D minimising the mean NLL of the `keep` positions with group g's logits moved by
    h·d_g, plus l2·s²·|D|²/2 (convex): L-BFGS with a strong-Wolfe line search, from `start` (else zero)."""
    fitted = positions if keep is None else positions.subset(keep)
    weight = l2_weight(fitted, l2)
    shape = (fitted.group_lse.shape[1], fitted.hidden.shape[1])
    directions = (torch.zeros(shape, dtype=torch.float64) if start is None else start.clone()).requires_grad_()
    solver = torch.optim.LBFGS([directions], lr=1, max_iter=500, history_size=50, tolerance_grad=1e-9,
                               tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        solver.zero_grad()
        value = fitted.shifted_nll(fitted.hidden @ directions.T).mean() + weight * directions.pow(2).sum() / 2
        value.backward()
        return value

    solver.step(closure)
    return directions.detach()


def direction_nll(
    positions: ClassPositions, directions: torch.Tensor | None, keep: torch.Tensor | None = None
) -> float:
    """Mean NLL per position (of the `keep` ones) with group g's logits moved by h·d_g (None: unmoved)."""
    scored = positions if keep is None else positions.subset(keep)
    hidden = scored.hidden
    shift = hidden @ directions.T if directions is not None else torch.zeros(len(hidden), 1, dtype=hidden.dtype)
    return float(scored.shifted_nll(shift).mean()) if len(hidden) else 0.0


def choose_l2(positions: ClassPositions) -> tuple[float, dict[str, object]]:
    """The L2 weight of `L2_GRID` whose fit scores best on every `HELD_OUT_EVERY`th document, and the scores;
    the strongest weight when there are too few documents to hold any out."""
    held_out = positions.document % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    if not held_out.any() or held_out.all():
        log.warning("calibration: fewer than %d documents to fit the shared direction on — it uses the strongest "
                    "L2 weight (%g) instead of choosing one", HELD_OUT_EVERY, L2_GRID[-1])
        return L2_GRID[-1], {"held_out_nll_before": None, "held_out_nll_by_l2": None}
    scores, fitted = {}, None
    for l2 in sorted(L2_GRID, reverse=True):  # strong to weak, each fit starting from the one before
        fitted = fit_shared_direction(positions, l2, ~held_out, start=fitted)
        scores[l2] = direction_nll(positions, fitted, held_out)
    return min(scores, key=scores.__getitem__), {
        "held_out_nll_before": round(direction_nll(positions, None, held_out), 4),
        "held_out_nll_by_l2": {str(k): round(scores[k], 4) for k in L2_GRID}}


def apply_shared_direction(
    inputs: InitInputs, rows: dict[str, torch.Tensor], options: CalibrationConfig
) -> dict[str, object]:
    """Fit D and add d_g to every new row of group g; tied, refit `direction_passes` times on what the model
    then reads (the groups stay those of the method's rows)."""
    name = OUTPUT if OUTPUT in rows else INPUT
    passes = options.direction_passes if name == INPUT else 1  # untied, the hidden states do not move
    groups = token_groups(inputs, rows[name], options.direction_word_start, options.direction_clusters)
    report: dict[str, object] = {"shared_direction_groups": int(groups.max()) + 1}
    for done in range(passes):
        positions = class_positions(inputs, rows, options, groups)
        if not len(positions.hidden):
            log.warning("calibration: no target text to fit the shared direction on — skipped")
            return {"shared_direction": "skipped: no target text"}
        before = direction_nll(positions, None)
        if done == 0:
            l2, chosen_by = choose_l2(positions)
            report.update({"shared_direction_l2": l2, "shared_direction_positions": len(positions.hidden),
                           **chosen_by, "nll_per_position_before": round(before, 4)})
        directions = fit_shared_direction(positions, l2)
        rows[name].add_(directions[groups].to(rows[name].dtype))
        report.setdefault("shared_direction_norms", []).append(round(float(directions.norm()), 4))
        report["nll_per_position_after"] = round(direction_nll(positions, directions), 4)
        log.info("calibration: shared direction (%d groups), pass %d (L2 %g): NLL %.4f -> %.4f per position on %d",
                 report["shared_direction_groups"], done + 1, l2, before, report["nll_per_position_after"],
                 len(positions.hidden))
    return report
