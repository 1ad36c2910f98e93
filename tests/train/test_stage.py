"""The cpt stage inside `langadapt run`: inputs, manifest metrics, kill -9 + resume, preflight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langadapt import pipeline
from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import run_pipeline
from langadapt.runstore import RunStore
from tests.tiny import EU_DEV, REPO
from tests.train.conftest import PACK_METRICS, STAND_INS, install_stand_ins, run_config


def test_stage_trains_the_base_and_records_the_run(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path, monkeypatch
) -> None:
    install_stand_ins(monkeypatch, packed_eu)
    results = run_pipeline(run_config(tmp_path, tiny_llama))
    assert [r.name for r in results] == ["data", "pack", "cpt"]
    run = tmp_path / "run"
    manifest = json.loads((run / "cpt" / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["tokens_seen"] == 4 * 4 * 64 and metrics["steps"] == 4 and metrics["tokens_per_second"] > 0
    assert [p["step"] for p in metrics["loss_curve"]] == [1, 2, 3, 4]
    pack = json.loads((run / "pack" / "manifest.json").read_text())["metrics"]
    assert metrics["data_token_share"] == pack["mix"]["achieved_token_share"]
    assert metrics["packing_efficiency"] == pack["packing_efficiency"]
    assert metrics["summary"]["tokens seen"] == 1024 and manifest["wall_seconds"] > 0
    assert manifest["config"]["cpt"]["mode"] == "embeddings"
    assert not (run / ".work" / "cpt").exists()  # checkpoints go once the stage is committed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(run / "cpt" / "model")
    AutoTokenizer.from_pretrained(run / "cpt" / "model")
    assert [r.status for r in run_pipeline(run_config(tmp_path, tiny_llama))] == ["skipped"] * 3


def test_stage_trains_the_embed_stages_model_when_there_is_one(
    tmp_path: Path, tiny_llama: Path, tiny_qwen2: Path, packed_eu: Path, monkeypatch
) -> None:
    install_stand_ins(monkeypatch, packed_eu, embed_model=tiny_qwen2)
    run_pipeline(run_config(tmp_path, tiny_llama, max_steps=2))
    config = json.loads((tmp_path / "run" / "cpt" / "model" / "config.json").read_text())
    assert config["model_type"] == "qwen2"


def test_preflight_refuses_a_launcher_around_run_and_unknown_optimizers(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path, monkeypatch
) -> None:
    install_stand_ins(monkeypatch, packed_eu)
    with pytest.raises(LangadaptError, match="is not a transformers optimizer"):
        pipeline.check(run_config(tmp_path, tiny_llama, optimizer="adamw_fancy"))
    with pytest.raises(LangadaptError, match="does not exist — see configs/accelerate"):
        pipeline.check(run_config(tmp_path, tiny_llama, launch={"config_file": "nope.yaml"}))
    with pytest.raises(LangadaptError, match=r"warmup_steps \(4\) ≥ total steps \(4\)"):
        pipeline.check(run_config(tmp_path, tiny_llama, warmup_steps=4, max_steps=4))  # caught before any training
    with pytest.raises(LangadaptError, match=r"wsd: warmup_steps \(3\) \+ decay steps \(2\) exceed"):
        pipeline.check(run_config(tmp_path, tiny_llama, schedule="wsd", warmup_steps=3, max_steps=4, decay_ratio=0.5))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LangadaptError, match="run it without torchrun/accelerate launch"):
        pipeline.check(run_config(tmp_path, tiny_llama))
    assert not (tmp_path / "run").exists()


KILLABLE = STAND_INS + textwrap.dedent(
    """
    import json, sys, time
    from langadapt.config import validate_config
    from langadapt.train import common

    step = common.LangadaptTrainer.training_step
    def slow_step(self, *args, **kwargs):  # time for the test to kill it mid-run; numerics are unchanged
        time.sleep(0.05)
        return step(self, *args, **kwargs)
    common.LangadaptTrainer.training_step = slow_step

    pipeline.registered_stages = stages_with_stand_ins
    pipeline.run_pipeline(validate_config(json.loads(Path(sys.argv[1]).read_text()), base_dir=Path(".")))
    """
)


def test_kill_9_mid_training_then_rerun_resumes_bit_identically(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path, monkeypatch
) -> None:
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    config = {
        "name": "t", "output_dir": str(killed), "target_language": "eu", "seed": 7,
        "models": {"base": str(tiny_llama)},
        "data": {"sources": {"eu": {"path": str(EU_DEV), "text_field": "eu"}}},
        "cpt": {"mode": "full", "max_steps": 12, "warmup_steps": 2, "save_steps": 3, "logging_steps": 1,
                "report_to": ["none"]},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "killable.py").write_text(KILLABLE)
    env = {**os.environ, "PACKED": str(packed_eu), "PACK_METRICS": json.dumps(PACK_METRICS),
           "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "killable.py"), str(tmp_path / "config.json")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / ".work" / "cpt" / "checkpoints" / "checkpoint-3" / "LANGADAPT_COMPLETE"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (killed / "cpt").exists()

    install_stand_ins(monkeypatch, packed_eu)
    run_pipeline(validate_config(config, base_dir=tmp_path))  # the re-run after the crash
    run_pipeline(validate_config({**config, "output_dir": str(straight)}, base_dir=tmp_path))
    resumed = RunStore(killed).manifest("cpt")["metrics"]
    assert resumed["resumed_from_step"] >= 3 and resumed["steps"] == 12
    a = load_file(str(killed / "cpt" / "model" / "model.safetensors"))
    b = load_file(str(straight / "cpt" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["loss_curve"] == RunStore(straight).manifest("cpt")["metrics"]["loss_curve"]
