"""A new eval task, init method and stage are one file each: `tests/plugins/shout.py` registers all three and
`langadapt run` picks them up — config keys, order, inputs, manifests — with no other file changed."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langadapt.config import validate_config
from langadapt.embeddings.registry import unregister
from langadapt.evaluate.tasks import EVAL_TASKS
from langadapt.pipeline import STAGES, pipeline_order, run_pipeline
from langadapt.runstore import RunStore
from langadapt.vocab.token_map import TokenMap
from tests.tiny import EU_DEV, EU_TRAIN


@pytest.fixture
def plugin():
    module = importlib.import_module("tests.plugins.shout")
    yield module
    unregister("half_mean")
    EVAL_TASKS.remove("token_count")
    STAGES.remove("shout")
    sys.modules.pop("tests.plugins.shout", None)  # a later import registers them again


def test_a_plugin_file_adds_a_task_a_method_and_a_stage(tmp_path: Path, tiny_llama: Path, plugin) -> None:
    assert pipeline_order().index("embed") < pipeline_order().index("shout") < pipeline_order().index("eval")
    cfg = validate_config({
        "name": "p", "output_dir": str(tmp_path / "run"), "target_language": "eu", "models": {"base": str(tiny_llama)},
        "data": {"sources": {"eu": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu", "max_documents": 300}},
                 "eval_sources": {"eu_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"}},
                 "langid": None, "dedup": None},
        "vocab": {"method": "extended", "vocab_size": 700},
        "embed": {"method": "half_mean"},
        "shout": {"word": "aupa"},
        "eval": {"models": ["base", "embed"], "bpc": None, "token_count": {"source": "eu_dev", "limit": 2}},
    }, base_dir=tmp_path)
    results = run_pipeline(cfg)
    assert [r.name for r in results] == ["data", "vocab", "embed", "shout", "eval"]
    run = tmp_path / "run"
    store = RunStore(run)

    # the init method: every new row is half its sub-token mean, kept rows are the base's own
    token_map = TokenMap.load(run / "embed" / "model")
    new = load_file(str(run / "embed" / "model" / "model.safetensors"))["model.embed_tokens.weight"]
    old = load_file(str(tiny_llama / "model.safetensors"))["model.embed_tokens.weight"]
    for new_id in token_map.new_ids()[:20]:
        pieces = token_map.decompositions[new_id]
        assert torch.allclose(new[new_id], old[pieces].mean(0) / 2, atol=1e-6)
    assert torch.equal(new[: token_map.base_vocab_size], old[: token_map.base_vocab_size])
    assert store.manifest("embed")["metrics"]["method"] == "half_mean"

    # the stage: its own section, the embed model as upstream, every earlier stage as input
    shout = store.manifest("shout")
    assert (run / "shout" / "shout" / "word.txt").read_text() == "AUPA"
    assert shout["metrics"]["model"] == str(run / "embed" / "model")
    assert shout["metrics"]["vocab"] == token_map.vocab_size
    assert shout["metrics"]["inputs"] == ["data", "vocab", "embed"] and shout["config"] == {"shout": {"word": "aupa"}}

    # the eval task: its key in the eval section, its numbers in each model's report and headline
    from transformers import AutoTokenizer

    base_report = json.loads((run / "eval" / "base.json").read_text())
    embed_report = json.loads((run / "eval" / "embed.json").read_text())
    from langadapt.data.corpus import eval_file, read_texts

    first = list(read_texts(eval_file(run / "data", "eu_dev")))[:2]
    for report, folder in ((base_report, tiny_llama), (embed_report, run / "embed" / "model")):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in first]
        assert report["token_count"] == {"counts": expected}
        assert report["headline"]["tokens"] == float(sum(expected))
    assert embed_report["headline"]["tokens"] < base_report["headline"]["tokens"]  # the new vocabulary is shorter


def test_without_the_plugin_its_keys_are_unknown(tmp_path: Path) -> None:
    from langadapt.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown key 'shout'"):
        validate_config({"name": "p", "output_dir": str(tmp_path), "target_language": "eu",
                         "models": {"base": "builtin:smollm2-135m-instruct"},
                         "data": {"sources": {"eu": {"path": str(EU_DEV)}}}, "shout": {}}, base_dir=tmp_path)
