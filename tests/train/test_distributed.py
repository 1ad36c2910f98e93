"""Multi-process CPT: real DDP on CPU (gloo, 2 processes) and the shipped accelerate configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from langadapt.pipeline import run_pipeline
from langadapt.runstore import RunStore
from langadapt.train.cpt import CptJob, run_cpt
from tests.tiny import REPO
from tests.train.conftest import fast_settings, install_stand_ins, run_config

ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"


def test_ddp_on_two_processes_matches_one_process_with_the_same_global_batch(
    tmp_path: Path, tiny_llama: Path, packed_eu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`langadapt run` with launch.num_processes 2 starts `langadapt cpt` under torchrun (gloo on CPU)."""
    install_stand_ins(monkeypatch, packed_eu)
    common = dict(mode="full", max_steps=4, warmup_steps=1, save_steps=2, logging_steps=1, learning_rate=1e-2)
    run_pipeline(run_config(tmp_path, tiny_llama, batch_size=2, launch={"num_processes": 2}, **common))
    ddp = RunStore(tmp_path / "run").manifest("cpt")["metrics"]
    assert ddp["processes"] == 2 and ddp["global_batch_blocks"] == 4
    pack = RunStore(tmp_path / "run").manifest("pack")["metrics"]
    assert ddp["data_token_share"] == pack["mix"]["achieved_token_share"]

    single_out = tmp_path / "single"
    single_out.mkdir()
    single = run_cpt(CptJob(settings=fast_settings(batch_size=4, **common), model=str(tiny_llama), data=packed_eu,
                            out=single_out, work=tmp_path / "single.work", seed=7))
    assert single["processes"] == 1
    for a, b in zip(ddp["loss_curve"], single["loss_curve"], strict=True):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    ddp_weights = load_file(str(tmp_path / "run" / "cpt" / "model" / "model.safetensors"))
    single_weights = load_file(str(single_out / "model" / "model.safetensors"))
    assert ddp_weights.keys() == single_weights.keys()
    for name, tensor in ddp_weights.items():
        assert torch.allclose(tensor, single_weights[name], atol=1e-5), name
    assert not torch.equal(
        ddp_weights["model.norm.weight"], load_file(str(tiny_llama / "model.safetensors"))["model.norm.weight"]
    )


@pytest.mark.parametrize(
    ("name", "kind"),
    [("ddp.yaml", "MULTI_GPU"), ("deepspeed-zero2.yaml", "DEEPSPEED"), ("deepspeed-zero3.yaml", "DEEPSPEED"),
     ("fsdp.yaml", "FSDP")],
)
def test_accelerate_configs_load_with_accelerate(name: str, kind: str) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ACCELERATE_CONFIGS / name))
    assert config.distributed_type.value == kind and config.num_machines == 1
    if name.startswith("deepspeed"):
        stage = config.deepspeed_config["zero_stage"]
        assert stage == int(name[-6])  # zero2 / zero3
        assert "gradient_accumulation_steps" not in config.deepspeed_config  # the cpt section decides it
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the final save is one state dict
