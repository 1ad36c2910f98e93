"""The `cpt` pipeline stage: train the embed stage's model (else the base) on the pack stage's dataset."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage
from langadapt.runstore import read_json


def _external_inputs(cfg: RunConfig) -> Iterable[str]:
    yield cfg.models.base  # read when there is no embed stage; a local folder is fingerprinted
    if cfg.cpt is not None and cfg.cpt.launch.config_file is not None:
        yield str(cfg.cpt.launch.config_file)


def _preflight(cfg: RunConfig) -> None:
    assert cfg.cpt is not None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise LangadaptError(
            "langadapt run starts its own training processes — run it without torchrun/accelerate launch and set "
            "cpt.launch.num_processes (or launch `langadapt cpt` itself with torchrun)"
        )
    from transformers.training_args import OptimizerNames

    known = [name.value for name in OptimizerNames]
    if cfg.cpt.optimizer not in known:
        close = difflib.get_close_matches(cfg.cpt.optimizer, known, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "e.g. adamw_torch_fused, adamw_torch, adamw_8bit"
        raise LangadaptError(f"cpt.optimizer '{cfg.cpt.optimizer}' is not a transformers optimizer — {hint}")
    config_file = cfg.cpt.launch.config_file
    if config_file is not None and not Path(config_file).is_file():
        raise LangadaptError(f"cpt.launch.config_file '{config_file}' does not exist — see configs/accelerate/")
    if cfg.cpt.attention.startswith("flash_attention"):
        from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

        available = is_flash_attn_3_available() if cfg.cpt.attention.endswith("3") else is_flash_attn_2_available()
        if not available:
            raise LangadaptError(f"cpt.attention {cfg.cpt.attention} needs the flash-attn package on a CUDA GPU — "
                                 "install it or use attention: sdpa")


@stage(
    "cpt",
    needs=("pack",),
    after=("embed",),
    uses=("models.base", "models.tokenizer", "models.trust_remote_code"),
    external_inputs=_external_inputs,
    preflight=_preflight,
)
def cpt_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.train.cpt import CptJob, run_cpt

    assert cfg.cpt is not None
    model = ctx.model_from("embed")
    job = CptJob(
        settings=cfg.cpt,
        model=model,
        tokenizer=model if "embed" in ctx.inputs else cfg.models.base_tokenizer,
        data=ctx.inputs["pack"] / "dataset",
        out=ctx.out,
        work=ctx.work,
        seed=cfg.seed,
        trust_remote_code=cfg.models.trust_remote_code,
        extra_metrics=_data_mix(ctx.inputs["pack"]),
    )
    if cfg.cpt.launch.distributed:
        return launch_processes(cfg, job)
    return run_cpt(job)


def _data_mix(pack_dir: Path) -> dict[str, Any]:
    """The replay mixture the pack stage achieved (token shares per source) and its packing efficiency
    (real tokens / block tokens: `tokens_seen` counts block tokens), recorded beside the loss curve."""
    manifest = pack_dir / "manifest.json"
    metrics = read_json(manifest).get("metrics", {}) if manifest.exists() else {}
    mix = metrics.get("mix")
    found = {
        "data_token_share": mix.get("achieved_token_share") if isinstance(mix, dict) else None,
        "packing_efficiency": metrics.get("packing_efficiency"),
    }
    return {key: value for key, value in found.items() if value is not None}


def launch_processes(cfg: RunConfig, job: Any) -> dict[str, Any]:
    """Run `langadapt cpt` under torchrun (or accelerate launch with a config file) and collect its outputs."""
    assert cfg.cpt is not None
    launch = cfg.cpt.launch
    spec = job.work / "cpt-settings.json"
    spec.write_text(json.dumps({
        "seed": job.seed,
        "models": {"trust_remote_code": job.trust_remote_code},
        "cpt": cfg.cpt.model_dump(mode="json"),
    }))
    result = job.work / "result"
    shutil.rmtree(result, ignore_errors=True)
    if launch.config_file is not None:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch.config_file),
                    "--num_processes", str(launch.num_processes)]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(launch.num_processes)]
    command = [
        *launcher, "-m", "langadapt.cli", "cpt", "--model", str(job.model), "--data", str(job.data),
        "--out", str(result), "--work", str(job.work / "job"), "--config", str(spec),
        "--tokenizer", str(job.tokenizer),
    ]
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0 or not (result / "metrics.json").exists():
        raise LangadaptError(
            f"the {launch.num_processes} training processes failed (exit code {completed.returncode}) — see their "
            "output above; a re-run resumes from the last complete checkpoint"
        )
    for item in result.iterdir():
        if item.name != "metrics.json":
            os.replace(item, job.out / item.name)
    return {**read_json(result / "metrics.json"), **job.extra_metrics}
