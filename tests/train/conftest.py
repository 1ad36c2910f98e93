"""Fixtures for the training tests: packed datasets in the pack stage's format, fast CPT settings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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
    return write_packed(byte_level_tokenizer, tmp_path_factory.mktemp("packed") / "eu", texts=tiny.texts("eu", limit=400))


def fast_settings(**overrides: object) -> CptConfig:
    """A few CPU-second run: 6 steps of 4 blocks, checkpoints every 2 steps, no TensorBoard."""
    values: dict[str, object] = dict(
        mode="full", max_steps=6, warmup_steps=1, save_steps=2, logging_steps=1, batch_size=4,
        learning_rate=1e-2, report_to=["none"],
    )
    values.update(overrides)
    return CptConfig(**values)


MIX = {"achieved_token_share": {"basque": 0.8, "english": 0.2}}

# A stand-in for the data layer's pack stage (issue 8) and the embed stage (issue 4) until they land:
# they copy prepared folders into their stage folders, exactly in the contract's layout.
STAND_INS = textwrap.dedent(
    """
    import os, shutil
    from pathlib import Path
    from langadapt import pipeline
    from langadapt.pipeline import Stage

    def fake_pack(cfg, ctx):
        shutil.copytree(os.environ["PACKED"], ctx.out / "dataset")
        return {"mix": {"achieved_token_share": {"basque": 0.8, "english": 0.2}}, "packing_efficiency": 1.0}

    def fake_embed(cfg, ctx):
        shutil.copytree(os.environ["EMBED_MODEL"], ctx.out / "model")
        return {}

    def stages_with_stand_ins(real=pipeline.registered_stages):
        stages = dict(real())
        stages["pack"] = Stage("pack", fake_pack, section=None)
        if os.environ.get("EMBED_MODEL"):
            stages["embed"] = Stage("embed", fake_embed, section=None)
        return stages
    """
)


def install_stand_ins(monkeypatch: pytest.MonkeyPatch, packed: Path, embed_model: Path | None = None) -> None:
    namespace: dict = {}
    exec(STAND_INS, namespace)
    monkeypatch.setenv("PACKED", str(packed))
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
