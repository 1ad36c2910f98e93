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
