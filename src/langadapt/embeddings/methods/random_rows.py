"""`random`: N(0, initializer_range), what the model's own `_init_weights` does — a baseline only."""

from __future__ import annotations

import torch

from langadapt.embeddings.registry import InitInputs, InitResult, NoOptions, init_method


@init_method("random")
def random_init(inputs: InitInputs, options: NoOptions) -> InitResult:
    """N(0, initializer_range), the model's own init — a baseline only"""
    count = len(inputs.new_ids)
    return InitResult({
        name: torch.randn(count, old.shape[1], generator=inputs.generator, dtype=torch.float64) * inputs.init_std
        for name, old in inputs.matrices.items()
    })
