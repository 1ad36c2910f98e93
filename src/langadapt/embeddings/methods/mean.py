"""`mean` (the LEP paper's, Eq. 1-2): each new row = the mean of the old rows of its sub-tokens.

Each matrix from its own rows (input embeddings and an untied head alike); a token with no sub-token at all
(a byte symbol the old vocabulary lacks) gets the mean of all old rows and counts as a fallback.

`jitter: a` adds a·(z − μ), z a sample of the old rows' fitted normal N(μ, Σ): tokens that share sub-tokens
get rows as close as their means (cosine 0.91 to the nearest row for Basque, against 0.79 among old rows),
which a copy circuit cannot tell apart; the jitter makes them distinct at a bits/char cost
(`bench/readability.py`, `docs/benchmarks.md`).
"""

from __future__ import annotations

from pydantic import Field

from langadapt.embeddings.registry import InitInputs, InitResult, init_method
from langadapt.embeddings.surgery import sample_fitted_normal, subtoken_mean
from langadapt.schema import Section


class MeanOptions(Section):
    """Options of `embed.method: mean` (`embed.options.mean`)."""

    jitter: float = Field(default=0.0, ge=0, description="scale of the fitted-normal noise added to each new row")


@init_method("mean", options=MeanOptions)
def mean_init(inputs: InitInputs, options: MeanOptions) -> InitResult:
    """mean of the old rows of the token's sub-tokens (the LEP paper's)"""
    rows = {}
    found = None
    for name in inputs.matrices:
        base = inputs.base_rows(name)
        rows[name], found = subtoken_mean(base, inputs.token_map, inputs.new_ids)
        rows[name][~found] = base.mean(0)
        if options.jitter:
            noise = sample_fitted_normal(base, len(inputs.new_ids), inputs.generator) - base.double().mean(0)
            rows[name] += options.jitter * noise.to(rows[name].dtype)
    fallback = int((~found).sum()) if found is not None else 0
    return InitResult(rows, fallback, {"jitter": options.jitter} if options.jitter else {})
