"""The sft and dpo stages in a run (copy task from the data stage's corpus, self-calibration by the original
instruct model, instruction and preference files), and the `langadapt sft` / `dpo` verbs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from langadapt.train.check import check_model_folder
from langadapt.train.common import COMPLETE_MARKER
from tests.conftest import INSTRUCT_REPLY
from tests.data.test_instruct import write_jsonl

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINING = {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-3, "max_length": 256, "logging_steps": 1}


def instruction_files(folder: Path) -> tuple[Path, Path]:
    alpaca = write_jsonl(folder / "instructions.jsonl", [
        {"instruction": f"Idatzi esaldi bat {n}-ri buruz.", "output": f"{n} oso gauza polita da."}
        for n in ("Calc", "Writer", "Impress", "Draw")
    ])
    preferences = write_jsonl(folder / "preferences.jsonl", [
        {"prompt": f"Zer da {n}?", "chosen": f"{n} programa bat da.", "rejected": f"{n} is a program."}
        for n in ("Calc", "Writer", "Impress", "Draw")
    ])
    return alpaca, preferences


def run_config(tmp_path: Path, basque_texts: list[str], instruct: Path, base: Path, **sections) -> object:
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in basque_texts[:300]])
    alpaca, preferences = instruction_files(tmp_path)
    data = {
        "name": "t", "output_dir": str(tmp_path / "run"), "target_language": "eu", "seed": 7,
        "models": {"base": str(base), "instruct": str(instruct)},
        "data": {"sources": {"basque": {"path": str(corpus), "language": "eu"}}},
        "sft": {"data": [str(alpaca)],
                "copy_task": {"count": 12, "max_sentence_chars": 200, "max_paragraph_chars": 200}, **TRAINING,
                "self_calibration": {"prompts": [str(alpaca)], "max_new_tokens": 24, "batch_size": 4}},
        "dpo": {"data": [str(preferences)], **TRAINING, "max_steps": 2},
        **sections,
    }
    return validate_config(data, base_dir=tmp_path)


def test_sft_then_dpo_in_a_run(tmp_path, basque_texts, tiny_instruct_pair) -> None:
    cfg = run_config(tmp_path, basque_texts, tiny_instruct_pair.instruct, tiny_instruct_pair.base)
    results = run_pipeline(cfg)
    assert [(r.name, r.status) for r in results] == [("data", "ran"), ("sft", "ran"), ("dpo", "ran")]
    store = RunStore(tmp_path / "run")
    sft, dpo = store.manifest("sft")["metrics"], store.manifest("dpo")["metrics"]

    sft_dir = tmp_path / "run" / "sft"
    for folder in (sft_dir / "model", tmp_path / "run" / "dpo" / "model"):
        assert check_model_folder(folder, require_chat_template=True).ok
    assert (sft_dir / "adapter" / "adapter_model.safetensors").exists()
    assert sft["trained_model"] == str(tiny_instruct_pair.base)  # no embed/cpt/lep stage: the base model
    assert dpo["trained_model"] == str(sft_dir / "model")  # dpo continues from sft

    assert sft["sources"]["files"]["examples"] == 4 and sft["sources"]["copy_task"]["examples"] == 12
    copies = [json.loads(line) for line in (sft_dir / "data" / "copy_task.jsonl").read_text().splitlines()]
    assert len(copies) == 12 and all(c["messages"][1]["content"] in "\n".join(basque_texts[:300]) for c in copies)
    # The original instruct model answered every prompt with its fixed Basque reply; all four pass the filters.
    calibration = [json.loads(line) for line in (sft_dir / "data" / "self_calibration.jsonl").read_text().splitlines()]
    assert [c["messages"][-1]["content"] for c in calibration] == [INSTRUCT_REPLY] * 4
    assert sft["sources"]["self_calibration"] == {"prompts": 4, "kept": 4, "dropped": {}, "judge_scores": {},
                                                  "examples": 4}
    assert sft["data"]["examples"] == 20 and sft["summary"]["steps"] == 3
    assert dpo["data"]["examples"] == 4 and "reward margin" in dpo["summary"]

    again = run_pipeline(cfg)
    assert [r.status for r in again] == ["skipped"] * 3
    assert not list((tmp_path / "run").glob(".tmp-*"))


@pytest.mark.parametrize("sections, message", [
    ({"sft": {"copy_task": {"count": 2, "source": "nope"}}}, "sft.copy_task.source 'nope' is not a data source"),
    ({"sft": {"copy_task": {"count": 2}}, "target_language": "xh"}, "no data source has language 'xh'"),
    ({"sft": {"data": ["missing.jsonl"]}}, "instruction file '.*missing.jsonl' does not exist"),
    ({"sft": {"self_calibration": {"prompts": ["instructions.jsonl"], "judge": {"url": "http://x", "model": "m",
                                                                                "api_key_env": "NO_SUCH_KEY"}}}},
     "environment variable NO_SUCH_KEY, which is not set"),
    ({"dpo": {"data": ["instructions.jsonl"], "chat_template": "nope.jinja"}},
     "dpo.chat_template 'nope.jinja' is neither 'chatml' nor an existing .jinja file"),
])
def test_validate_catches_bad_sections(tmp_path, basque_texts, tiny_llama, sections, message) -> None:
    cfg = run_config(tmp_path, basque_texts, tiny_llama, tiny_llama)
    data = cfg.model_dump(mode="json") | sections
    with pytest.raises(LangadaptError, match=message):
        check(validate_config(data, base_dir=tmp_path))


@pytest.mark.parametrize("sections, message", [
    ({"sft": {"max_steps": 3}}, "no training data — set data"),
    ({"sft": {"copy_task": {"instructions": ["Kopiatu"]}}}, "has no {text} placeholder"),
    ({"sft": {"copy_task": {}, "mode": "full", "lora": {"r": 4}}}, "a lora section is set but mode is 'full'"),
    ({"dpo": {"data": []}}, "'dpo.data' needs at least 1 item"),
    ({"dpo": {"data": ["x.jsonl"], "loss_type": "hinge"}}, "dpo.loss_type"),
    ({"sft": {"self_calibration": {"prompts": ["x.jsonl"],
                                   "judge": {"url": "u", "model": "m", "api_key_env": "sk-123"}}}},
     "api_key_env"),
])
def test_config_errors_name_the_key(tmp_path, sections, message) -> None:
    from langadapt.errors import ConfigError

    data = {"name": "t", "output_dir": str(tmp_path / "run"), "target_language": "eu",
            "models": {"base": "builtin:smollm2-135m-instruct"}, "data": {"sources": {"eu": {"path": "c.jsonl"}}},
            **sections}
    with pytest.raises(ConfigError, match=message):
        validate_config(data, base_dir=tmp_path)


def test_the_verbs_write_through_a_temporary_folder(tmp_path, tiny_llama) -> None:
    alpaca, preferences = instruction_files(tmp_path)
    runner = CliRunner()
    out = tmp_path / "sft-out"
    result = runner.invoke(app, ["sft", "--model", str(tiny_llama), "--out", str(out), "--data", str(alpaca),
                                 "--set", "max_steps=2", "--set", "batch_size=2", "--set", "lora.r=4"])
    assert result.exit_code == 0, result.output
    assert "sft done:" in result.output and check_model_folder(out / "model").ok
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["summary"]["steps"] == 2 and not metrics["train_embeddings"]
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "sft-out.work").exists()

    again = runner.invoke(app, ["sft", "--model", str(tiny_llama), "--out", str(out), "--data", str(alpaca)])
    assert isinstance(again.exception, LangadaptError) and "already exists" in str(again.exception)

    # Checkpoints a failed attempt with other settings left behind are not resumed from.
    stale = tmp_path / "dpo-out.work" / "checkpoints" / "checkpoint-99"
    stale.mkdir(parents=True)
    (stale / COMPLETE_MARKER).write_text("99\n")
    (tmp_path / "dpo-out.work" / "KEY").write_text("an earlier attempt with other settings\n")
    dpo = runner.invoke(app, ["dpo", "--model", str(out / "model"), "--out", str(tmp_path / "dpo-out"),
                              "--data", str(preferences), "--set", "max_steps=1", "--set", "mode=full"])
    assert dpo.exit_code == 0, dpo.output
    assert check_model_folder(tmp_path / "dpo-out" / "model").ok
    assert json.loads((tmp_path / "dpo-out" / "metrics.json").read_text())["summary"]["steps"] == 1

    # A run config: its sft section, seed, language and models (relative to the config's folder) are used.
    corpus = write_jsonl(
        tmp_path / "corpus.jsonl", [{"text": "Lehen esaldia luzea da hau. Bigarren esaldia ere luzea da."}]
    )
    config = tmp_path / "conf" / "run.yaml"
    config.parent.mkdir()
    shutil.copytree(tiny_llama, tmp_path / "conf" / "base")
    config.write_text("seed: 3\ntarget_language: eu\nmodels: {base: base}\n"
                      "sft: {copy_task: {count: 3}, max_steps: 1, batch_size: 2}\n")
    copy_out = tmp_path / "copy-out"
    result = runner.invoke(app, ["sft", "--model", str(tiny_llama), "--out", str(copy_out), "--config", str(config),
                                 "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    copies = [json.loads(line)["messages"] for line in (copy_out / "data" / "copy_task.jsonl").read_text().splitlines()]
    assert len(copies) == 3 and all(c[0]["content"].endswith(c[1]["content"]) for c in copies)
    assert all(c[0]["content"].startswith(("Kopiatu", "Errepikatu", "Idatzi berriro")) for c in copies)

    bad = runner.invoke(app, ["dpo", "--model", str(tiny_llama), "--out", str(tmp_path / "x"), "--data", str(alpaca),
                              "--set", "max_steps=1"])
    assert "a alpaca row where preference pairs are expected" in str(bad.exception)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".tmp-*"))
