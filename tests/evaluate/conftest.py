"""Models loaded once for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="session")
def llama(tiny_llama: Path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama)


@pytest.fixture(scope="session")
def instruct(tiny_instruct_pair):
    model = AutoModelForCausalLM.from_pretrained(tiny_instruct_pair.instruct, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_instruct_pair.instruct)


def document_nll(model, ids: list[int]) -> float:
    """Σ −log p(ids[i] | ids[:i]) over one document, from one plain forward pass in float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logp = torch.log_softmax(logits[:-1], -1)
    return -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item()


def reference_bits_per_char(model, tokenizer, texts: list[str]) -> float:
    """The bits/char definition computed the slow, obvious way (one document per forward pass, each after the
    BOS-else-EOS prefix): the oracle for tests of what reports and verbs print, independent of `bpc.py`."""
    import math

    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    nll = sum(document_nll(model, [prefix, *tokenizer(t, add_special_tokens=False)["input_ids"]]) for t in texts)
    return nll / math.log(2) / sum(len(t) for t in texts)
