"""Fixtures of the SFT / DPO / check tests: tiny models with a resized vocabulary, and trained runs shared
by several tests (each tiny training run takes a few seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Normal (non-special) Basque tokens added to the tiny models, as a vocabulary-adaptation stage would.
NEW_TOKENS = ["kaixomundua", "eskerrikasko", "egunon"]


@pytest.fixture
def one_torch_thread():
    """Tiny models train 10-50x slower with 2 threads when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def add_tokens(model_dir: Path, out: Path, tokens: list[str]) -> Path:
    """Append normal tokens and resize the model (mean init), saved as a full folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer.add_tokens(tokens)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    torch.manual_seed(0)
    with torch.no_grad():  # random rows, like an initialiser that has not been trained yet
        rows = model.get_input_embeddings().weight[-len(tokens):]
        rows.normal_(0, 0.02)
        if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
            model.get_output_embeddings().weight[-len(tokens):].normal_(0, 0.02)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def resized_tied(tmp_path_factory: pytest.TempPathFactory, tiny_llama_tied: Path) -> Path:
    return add_tokens(tiny_llama_tied, tmp_path_factory.mktemp("model") / "resized_tied", NEW_TOKENS)


@pytest.fixture(scope="session")
def resized_untied(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> Path:
    return add_tokens(tiny_llama, tmp_path_factory.mktemp("model") / "resized_untied", NEW_TOKENS)


def greeting_conversations(count: int = 32) -> list[list[dict[str, str]]]:
    """Questions answered with a sentence that uses the new tokens."""
    return [
        [{"role": "user", "content": f"Agurtu {i} aldiz, mesedez."}, {"role": "assistant", "content": "kaixomundua eta egunon"}]
        for i in range(count)
    ]


@dataclass(frozen=True)
class TrainedRun:
    start: Path  # the model folder training started from
    out: Path  # holds model/ and adapter/
    metrics: dict


def train_sft(start: Path, original: Path, out: Path, *, conversations=None, **settings) -> TrainedRun:
    from langadapt.train.config import SftConfig
    from langadapt.train.sft import TuningJob, run_sft

    values = {"copy_task": {"count": 1}, "max_steps": 30, "batch_size": 8, "learning_rate": 1e-2, "logging_steps": 5}
    if settings.get("mode", "lora") == "lora":
        values["lora"] = {"r": 8, "alpha": 16, "dropout": 0.0}
    values |= settings
    job = TuningJob(model=str(start), tokenizer=str(start), original_tokenizer=str(original), out=out,
                    work=out.with_name(out.name + ".work"), seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = run_sft(job, SftConfig(**values), conversations or greeting_conversations())
    finally:
        torch.set_num_threads(threads)
    return TrainedRun(start, out, metrics)


@pytest.fixture(scope="session")
def lora_run_tied(tmp_path_factory, resized_tied, tiny_llama_tied) -> TrainedRun:
    return train_sft(resized_tied, tiny_llama_tied, tmp_path_factory.mktemp("sft") / "tied")


@pytest.fixture(scope="session")
def lora_run_untied(tmp_path_factory, resized_untied, tiny_llama) -> TrainedRun:
    return train_sft(resized_untied, tiny_llama, tmp_path_factory.mktemp("sft") / "untied")
