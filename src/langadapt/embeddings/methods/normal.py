"""`normal`: a sample of N(μ, Σ), the mean and covariance of the old rows (Hewitt 2021).

transformers' `resize_token_embeddings(mean_resizing=True)` samples N(μ, 1e-9·Σ), i.e. practically the mean row.
"""

from __future__ import annotations

from langadapt.embeddings.registry import InitInputs, InitResult, NoOptions, init_method
from langadapt.embeddings.surgery import sample_fitted_normal


@init_method("normal")
def normal_init(inputs: InitInputs, options: NoOptions) -> InitResult:
    """a sample of N(mean, covariance) of the old rows (Hewitt 2021)"""
    count = len(inputs.new_ids)
    return InitResult({name: sample_fitted_normal(inputs.base_rows(name), count, inputs.generator)
                       for name in inputs.matrices})
