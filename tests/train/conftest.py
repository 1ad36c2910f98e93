"""Fixtures of the training tests.

cpt: packed datasets in the pack stage's format, fast settings, stand-ins for the pack/embed stages.
sft/dpo/check: tiny models with a resized vocabulary, and trained runs shared by several tests (each tiny
training run takes a few seconds).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from langadapt import pipeline
from langadapt.config import validate_config
from langadapt.train.config import CptConfig
from tests import tiny
from tests.tiny import EU_DEV

CONTEXT = 64


def pack_documents(documents: list[list[int]], context_length: int, eos_id: int) -> dict[str, list[list[int]]]:
    """The pack stage's contract (strategy concat): documents + EOS back to back, cut into full blocks;
    position ids restart at every document start and every block start."""
    ids = [token for doc in documents for token in (*doc, eos_id)]
    starts = {sum(len(doc) + 1 for doc in documents[:i]) for i in range(len(documents))}
    blocks = len(ids) // context_length
    rows: dict[str, list[list[int]]] = {"input_ids": [], "position_ids": []}
    for block in range(blocks):
        positions, position = [], 0
        for index in range(block * context_length, (block + 1) * context_length):
            position = 0 if index in starts or index == block * context_length else position + 1
            positions.append(position)
        rows["input_ids"].append(ids[block * context_length:(block + 1) * context_length])
        rows["position_ids"].append(positions)
    return rows


def write_packed(tokenizer_dir: Path, out: Path, *, texts: list[str], context_length: int = CONTEXT) -> Path:
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    documents = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    Dataset.from_dict(pack_documents(documents, context_length, tokenizer.eos_token_id)).save_to_disk(str(out))
    return out


@pytest.fixture(scope="session")
def packed_eu(tmp_path_factory: pytest.TempPathFactory, byte_level_tokenizer: Path) -> Path:
    """~170 blocks of 64 tokens of real Basque, tokenised with the tiny byte-level tokenizer (vocab 600)."""
    return write_packed(
        byte_level_tokenizer, tmp_path_factory.mktemp("packed") / "eu", texts=tiny.texts("eu", limit=400)
    )


def fast_settings(**overrides: object) -> CptConfig:
    """A few CPU-second run: 6 steps of 4 blocks, checkpoints every 2 steps, no TensorBoard."""
    values: dict[str, object] = dict(
        mode="full", max_steps=6, warmup_steps=1, save_steps=2, logging_steps=1, batch_size=4,
        learning_rate=1e-2, report_to=["none"],
    )
    values.update(overrides)
    return CptConfig(**values)


# What the stand-in pack stage reports: chosen here, unlike anything cpt could compute itself, so a test that
# finds them in cpt's metrics shows cpt copied the pack stage's manifest.
PACK_METRICS = {"mix": {"achieved_token_share": {"basque": 0.8137, "english": 0.1863}}, "packing_efficiency": 0.9871}

# Stand-ins for the pack and embed stages, so cpt stage tests need no data/vocab stages: they copy prepared
# folders into their stage folders in the stages' contract layout (tests/data/test_pack.py holds the contract).
STAND_INS = textwrap.dedent(
    """
    import json, os, shutil
    from pathlib import Path
    from langadapt import pipeline
    from langadapt.pipeline import Stage

    def fake_pack(cfg, ctx):
        shutil.copytree(os.environ["PACKED"], ctx.out / "dataset")
        return json.loads(os.environ["PACK_METRICS"])

    def fake_embed(cfg, ctx):
        shutil.copytree(os.environ["EMBED_MODEL"], ctx.out / "model")
        return {}

    def stages_with_stand_ins(real=pipeline.registered_stages):
        stages = dict(real())
        stages["pack"] = Stage("pack", fake_pack, section=None, produces=("dataset",))
        if os.environ.get("EMBED_MODEL"):
            stages["embed"] = Stage("embed", fake_embed, section=None, produces=("model",))
        return stages
    """
)


def install_stand_ins(monkeypatch: pytest.MonkeyPatch, packed: Path, embed_model: Path | None = None) -> None:
    namespace: dict = {}
    exec(STAND_INS, namespace)
    monkeypatch.setenv("PACKED", str(packed))
    monkeypatch.setenv("PACK_METRICS", json.dumps(PACK_METRICS))
    if embed_model is not None:
        monkeypatch.setenv("EMBED_MODEL", str(embed_model))
    monkeypatch.setattr(pipeline, "registered_stages", namespace["stages_with_stand_ins"])


def run_config(tmp_path: Path, base: Path, output: str = "run", **cpt: object) -> object:
    section = {"mode": "embeddings", "max_steps": 4, "warmup_steps": 1, "save_steps": 2, "logging_steps": 1,
               "learning_rate": 1e-2, "report_to": ["none"], **cpt}
    data = {
        "name": "t", "output_dir": str(tmp_path / output), "target_language": "eu", "seed": 7,
        "models": {"base": str(base)},
        "data": {"sources": {"eu": {"path": str(EU_DEV), "text_field": "eu"}}},
        "cpt": section,
    }
    return validate_config(data, base_dir=tmp_path)


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
        [
            {"role": "user", "content": f"Agurtu {i} aldiz, mesedez."},
            {"role": "assistant", "content": "kaixomundua eta egunon"},
        ]
        for i in range(count)
    ]


@dataclass(frozen=True)
class TrainedRun:
    start: Path  # the model folder training started from
    out: Path  # holds model/ and adapter/
    metrics: dict


def train_sft(start: Path, original: Path, out: Path, *, conversations=None, **settings) -> TrainedRun:
    from langadapt.train.config import SftConfig
    from langadapt.train.sft import run_sft
    from langadapt.train.tuning import TuningJob

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
