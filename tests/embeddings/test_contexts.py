"""The corpus-context helpers of the methods that run the model."""

from __future__ import annotations

import torch

from langadapt.embeddings.contexts import chunked_logsumexp


def test_chunked_logsumexp_has_the_values_and_gradients_of_the_full_one() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(37, generator=generator, dtype=torch.float64)

    full = torch.logsumexp(hidden @ weight.T, -1)
    grads_full = torch.autograd.grad((full * upstream).sum(), (hidden, weight))
    chunked = chunked_logsumexp(hidden, weight, rows=5)  # 8 blocks, the last one of 2 rows
    grads_chunked = torch.autograd.grad((chunked * upstream).sum(), (hidden, weight))

    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-12)
    for a, b in zip(grads_chunked, grads_full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert chunked_logsumexp(hidden[:0], weight).shape == (0,)
    # the vocabulary in two parts (kept, new): the same values and gradients as the whole
    parts = chunked_logsumexp(hidden, weight[:30], weight[30:], rows=5)
    torch.testing.assert_close(parts, full, rtol=0, atol=1e-12)
    grads_parts = torch.autograd.grad((parts * upstream).sum(), (hidden, weight))
    for a, b in zip(grads_parts, grads_full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
