"""`mean` (the LEP paper's, Eq. 1-2): each new row = the mean of the old rows of its sub-tokens.

Each matrix from its own rows (input embeddings and an untied head alike); a token with no sub-token at all
(a byte symbol the old vocabulary lacks) gets the mean of all old rows and counts as a fallback.
"""

from __future__ import annotations

from langadapt.embeddings.registry import InitInputs, InitResult, NoOptions, init_method
from langadapt.embeddings.surgery import subtoken_mean


@init_method("mean")
def mean_init(inputs: InitInputs, options: NoOptions) -> InitResult:
    """mean of the old rows of the token's sub-tokens (the LEP paper's)"""
    rows = {}
    found = None
    for name in inputs.matrices:
        base = inputs.base_rows(name)
        rows[name], found = subtoken_mean(base, inputs.token_map, inputs.new_ids)
        rows[name][~found] = base.mean(0)
    fallback = int((~found).sum()) if found is not None else 0
    return InitResult(rows, fallback, {})
