"""The translate stage in a run, feeding sft (`sft.data: [translate:NAME]`), and its preflight.

sft names the translate stage's output as `translate:NAME` and trains on the translated file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from langadapt.translate.stages import is_data_ref, resolve_data_ref
from tests.data.test_instruct import write_jsonl
from tests.openai_server import fake_server, last_user_text
from tests.translate.conftest import short_pairs

TRAINING = {"max_steps": 2, "batch_size": 4, "learning_rate": 1e-3, "max_length": 128, "logging_steps": 1}


def run_config(tmp_path: Path, url: str, base: Path, basque_texts: list[str], ref: str = "translate:alpaca"):
    pairs = short_pairs(16)
    alpaca = write_jsonl(tmp_path / "alpaca-en.jsonl", [
        {"instruction": pairs[2 * i]["en"], "output": pairs[2 * i + 1]["en"]} for i in range(8)])
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in basque_texts[:50]])
    data = {
        "name": "t", "output_dir": str(tmp_path / "run"), "target_language": "eu", "seed": 3,
        "models": {"base": str(base)},
        "data": {"sources": {"basque": {"path": str(corpus), "language": "eu"}}},
        "translate": {"backend": {"kind": "endpoint", "url": url, "model": "mt", "prompt": "{text}"},
                      "datasets": {"alpaca": str(alpaca)}},
        "sft": {"data": [str(alpaca)], **TRAINING},
    }
    cfg = validate_config(data, base_dir=tmp_path)
    cfg.sft = cfg.sft.model_copy(update={"data": [ref]})  # what SftConfig will accept once the hook lands
    return cfg


@pytest.mark.usefixtures("one_torch_thread")
def test_translate_then_sft_trains_on_the_translation(tmp_path, monkeypatch, tiny_llama, basque_texts, en_eu) -> None:
    with fake_server(reply=lambda body: en_eu[last_user_text(body)]) as server:
        cfg = run_config(tmp_path, server.url, tiny_llama, basque_texts)
        results = run_pipeline(cfg)
        assert [(r.name, r.status) for r in results] == [("data", "ran"), ("translate", "ran"), ("sft", "ran")]
        assert len(server.bodies) == 16
        store = RunStore(tmp_path / "run")
        translated = tmp_path / "run" / "translate" / "alpaca.jsonl"
        rows = [json.loads(line) for line in translated.read_text().splitlines()]
        assert [r["output"] for r in rows] == [en_eu[p["en"]] for p in short_pairs(16)[1::2]]
        assert store.manifest("translate")["metrics"]["summary"]["rows out"] == 8
        sft = store.manifest("sft")["metrics"]
        assert sft["sources"]["files"] == {"formats": {str(translated): "alpaca"}, "rows": 8, "dropped": {},
                                           "examples": 8}
        assert sft["summary"]["steps"] == 2
        assert [r.status for r in run_pipeline(cfg)] == ["skipped"] * 3 and len(server.bodies) == 16


def test_preflight_catches_a_ref_to_no_dataset_and_an_unknown_language(tmp_path, monkeypatch, tiny_llama,
                                                                       basque_texts) -> None:
    cfg = run_config(tmp_path, "http://127.0.0.1:9/v1", tiny_llama, basque_texts, ref="translate:nope")
    with pytest.raises(LangadaptError, match="'translate:nope' names no translate dataset — known: alpaca"):
        check(cfg)
    cfg = run_config(tmp_path, "http://127.0.0.1:9/v1", tiny_llama, basque_texts)
    check(cfg)
    cfg.translate = cfg.translate.model_copy(update={"target_language": "tlh"})
    with pytest.raises(LangadaptError, match="language filter has no model for 'tlh'"):
        check(cfg)


def test_resolving_refs(tmp_path: Path) -> None:
    (tmp_path / "translate").mkdir()
    (tmp_path / "translate" / "alpaca.jsonl").write_text("{}\n")
    assert (
        resolve_data_ref("translate:alpaca", {"translate": tmp_path / "translate"})
        == tmp_path / "translate" / "alpaca.jsonl"
    )
    with pytest.raises(LangadaptError, match="has no dataset 'other'"):
        resolve_data_ref("translate:other", {"translate": tmp_path / "translate"})
    with pytest.raises(LangadaptError, match="needs the translate stage"):
        resolve_data_ref("translate:alpaca", {})
    assert not is_data_ref(Path("translate:alpaca")) and not is_data_ref("data/x.jsonl")


def test_the_example_config_and_file() -> None:
    from langadapt.config import load_config
    from langadapt.data.instruct import load_conversations
    from tests.tiny import REPO

    cfg = load_config(REPO / "examples" / "translate-eu.yaml")
    assert cfg.translate is not None and cfg.translate.backend.kind == "causal_lm"
    conversations, report = load_conversations([cfg.translate.datasets["alpaca"].path])
    assert len(conversations) == 50 and report.dropped == {}
    text = json.dumps(conversations)
    assert all(needle in text for needle in ("```python", "https://", "@example.com", "{name}", "%s", "{{ user }}"))
