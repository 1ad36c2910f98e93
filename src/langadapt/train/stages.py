"""The training stages.

- `cpt`: continued pre-training of the embed stage's model (else the base) on the pack stage's dataset.
- `sft` (instruction tuning / calibration) and `dpo` (preference alignment): both train the newest model
  upstream — `lep`, else `cpt`, else `embed`, else `models.base` (dpo: `sft` first) — and write
  `<stage>/model/` (merged, standalone, checked by `langadapt check`) and, with LoRA, `<stage>/adapter/`.
  SFT also writes the generated training sets to `sft/data/`.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage
from langadapt.preflight import input_files_checked
from langadapt.runstore import read_json
from langadapt.train.config import CptConfig, DpoConfig, SftConfig

if TYPE_CHECKING:
    from langadapt.train.cpt import CptJob
    from langadapt.train.tuning import TuningJob

# ---------------------------------------------------------------------------------------------------------
# cpt
# ---------------------------------------------------------------------------------------------------------


def _cpt_inputs(cfg: RunConfig) -> Iterable[str]:
    yield cfg.models.base  # read when there is no embed stage; a local folder is fingerprinted
    if cfg.cpt is not None and cfg.cpt.launch.config_file is not None:
        yield str(cfg.cpt.launch.config_file)


def _cpt_preflight(cfg: RunConfig) -> None:
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
    if cfg.cpt.max_steps is not None:  # else the step count depends on the packed data: checked when cpt starts
        from langadapt.train.common import schedule_arguments

        schedule_arguments(cfg.cpt.schedule, warmup_steps=cfg.cpt.warmup_steps, total_steps=cfg.cpt.max_steps,
                           decay_ratio=cfg.cpt.decay_ratio, min_lr_ratio=cfg.cpt.min_lr_ratio)
    config_file = cfg.cpt.launch.config_file
    if config_file is not None and input_files_checked() and not Path(config_file).is_file():
        raise LangadaptError(f"cpt.launch.config_file '{config_file}' does not exist — see configs/accelerate/")
    if cfg.cpt.attention.startswith("flash_attention"):
        from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

        available = is_flash_attn_3_available() if cfg.cpt.attention.endswith("3") else is_flash_attn_2_available()
        if not available:
            raise LangadaptError(f"cpt.attention {cfg.cpt.attention} needs the flash-attn package on a CUDA GPU — "
                                 "install it or use attention: sdpa")


@stage(
    "cpt",
    config=CptConfig,
    needs=("pack",),
    after=("embed",),
    produces=("model",),
    uses=("models.base", "models.tokenizer", "models.trust_remote_code"),
    external_inputs=_cpt_inputs,
    preflight=_cpt_preflight,
)
def cpt_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.train.cpt import CptJob, run_cpt

    assert cfg.cpt is not None
    model = ctx.upstream_model()
    job = CptJob(
        settings=cfg.cpt,
        model=model,
        tokenizer=ctx.tokenizer_for(model),
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


def launch_processes(cfg: RunConfig, job: CptJob) -> dict[str, Any]:
    """Run the job under torchrun (or accelerate launch with a config file) and collect its outputs."""
    from langadapt.train.worker import METRICS, write_job

    assert cfg.cpt is not None
    launch = cfg.cpt.launch
    result = job.work / "result"
    shutil.rmtree(result, ignore_errors=True)
    result.mkdir(parents=True)
    spec = job.work / "job.json"
    write_job(replace(job, out=result, work=job.work / "job"), spec)
    if launch.config_file is not None:
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch.config_file),
                    "--num_processes", str(launch.num_processes)]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc_per_node", str(launch.num_processes)]
    completed = subprocess.run([*launcher, "-m", "langadapt.train.worker", str(spec)], check=False)
    if completed.returncode != 0 or not (result / METRICS).exists():
        raise LangadaptError(
            f"the {launch.num_processes} training processes failed (exit code {completed.returncode}) — see their "
            "output above; a re-run resumes from the last complete checkpoint"
        )
    for item in result.iterdir():
        if item.name != METRICS:
            os.replace(item, job.out / item.name)
    return {**read_json(result / METRICS), **job.extra_metrics}


# ---------------------------------------------------------------------------------------------------------
# sft and dpo
# ---------------------------------------------------------------------------------------------------------

TUNING_USES = ("models.base", "models.instruct", "models.tokenizer", "models.trust_remote_code", "target_language")


def _files_preflight(paths: Iterable[Any], where: str) -> None:
    """Each file exists and its first row has a known format (cheap: `validate` runs it)."""
    from langadapt.data.instruct import detect_format, read_records

    if not input_files_checked():
        return
    for path in paths:
        first = next(read_records(path), None)
        if first is None:
            raise LangadaptError(f"{where}: '{path}' holds no rows")
        detect_format(first[1], f"{path}:{first[0]}")


def _chat_template_preflight(setting: str | None, where: str) -> None:
    if setting not in (None, "chatml") and input_files_checked() and not Path(setting).is_file():
        raise LangadaptError(f"{where}.chat_template '{setting}' is neither 'chatml' nor an existing .jinja file")


def copy_task_source(cfg: RunConfig) -> str:
    """The corpus source the copy task reads: the configured one, else the first in the target language."""
    assert cfg.sft is not None and cfg.sft.copy_task is not None
    wanted = cfg.sft.copy_task.source
    if wanted is not None:
        if wanted not in cfg.data.sources:
            raise LangadaptError(f"sft.copy_task.source '{wanted}' is not a data source — choose one of: "
                                 f"{', '.join(cfg.data.sources)}")
        return wanted
    for name, source in cfg.data.sources.items():
        if source.language == cfg.target_language:
            return name
    raise LangadaptError(f"no data source has language '{cfg.target_language}' — set sft.copy_task.source")


def original_model(cfg: RunConfig) -> str:
    """The un-adapted instruct model (self-calibration answers come from it): `models.instruct`, else the base."""
    return cfg.models.instruct or cfg.models.base


def _data_files(data: Iterable[str | Path]) -> list[str]:
    """The files of a data list; `translate:NAME` entries are a stage's output, fingerprinted as that stage."""
    from langadapt.translate.stages import is_data_ref

    return [str(p) for p in data if not is_data_ref(p)]


def _sft_inputs(cfg: RunConfig) -> Iterable[str]:
    assert cfg.sft is not None
    yield from _data_files(cfg.sft.data)
    if cfg.sft.self_calibration is not None:
        yield from (str(p) for p in cfg.sft.self_calibration.prompts)
        yield original_model(cfg)


def _sft_preflight(cfg: RunConfig) -> None:
    from langadapt.train.copy_task import CONTINUATION_INSTRUCTIONS, COPY_TASK_INSTRUCTIONS
    from langadapt.translate.stages import check_data_refs

    sft = cfg.sft
    assert sft is not None
    check_data_refs(cfg, sft.data, "sft.data")
    _files_preflight(_data_files(sft.data), "sft.data")
    _chat_template_preflight(sft.chat_template, "sft")
    if sft.copy_task is not None:
        copy_task_source(cfg)
        if sft.copy_task.instructions is None and cfg.target_language not in COPY_TASK_INSTRUCTIONS:
            raise LangadaptError(f"no built-in copy-task instructions for '{cfg.target_language}' — set "
                                 "sft.copy_task.instructions")
        if (sft.copy_task.continuation_share and sft.copy_task.continuation_instructions is None
                and cfg.target_language not in CONTINUATION_INSTRUCTIONS):
            raise LangadaptError(f"no built-in continuation instructions for '{cfg.target_language}' — set "
                                 "sft.copy_task.continuation_instructions")
    if sft.self_calibration is not None:
        _files_preflight(sft.self_calibration.prompts, "sft.self_calibration.prompts")
        if sft.self_calibration.judge is not None:
            from langadapt.llm_client import read_key

            read_key(sft.self_calibration.judge)  # the key is set, and never sent over plain http elsewhere


def _job(cfg: RunConfig, ctx: StageContext) -> TuningJob:
    from langadapt.train.tuning import TuningJob

    model = ctx.upstream_model()
    return TuningJob(
        model=model,
        tokenizer=ctx.tokenizer_for(model),
        original_tokenizer=ctx.tokenizer_for(cfg.models.base),
        out=ctx.out,
        work=ctx.work,
        seed=cfg.seed,
        trust_remote_code=cfg.models.trust_remote_code,
        extra_metrics={"trained_model": model},
    )


@stage("sft", config=SftConfig, needs=("data",), after=("lep",), produces=("model",), chat=True,
       uses=TUNING_USES, external_inputs=_sft_inputs, preflight=_sft_preflight)
def sft_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.data.corpus import corpus_file, read_texts
    from langadapt.train.sft import train_sft
    from langadapt.translate.stages import resolve_data_refs

    assert cfg.sft is not None
    settings = cfg.sft.model_copy(update={"data": resolve_data_refs(cfg.sft.data, ctx.inputs)})
    return train_sft(
        _job(cfg, ctx), settings, language=cfg.target_language, original_model=original_model(cfg),
        corpus_texts=lambda: read_texts(corpus_file(ctx.inputs["data"], copy_task_source(cfg))),
    )


def _dpo_preflight(cfg: RunConfig) -> None:
    from langadapt.translate.stages import check_data_refs

    assert cfg.dpo is not None
    check_data_refs(cfg, cfg.dpo.data, "dpo.data")
    _files_preflight(_data_files(cfg.dpo.data), "dpo.data")
    _chat_template_preflight(cfg.dpo.chat_template, "dpo")


@stage("dpo", config=DpoConfig, after=("sft",), produces=("model",), chat=True, uses=TUNING_USES,
       external_inputs=lambda cfg: _data_files(cfg.dpo.data), preflight=_dpo_preflight)
def dpo_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.train.dpo import train_dpo
    from langadapt.translate.stages import resolve_data_refs

    assert cfg.dpo is not None
    settings = cfg.dpo.model_copy(update={"data": resolve_data_refs(cfg.dpo.data, ctx.inputs)})
    return train_dpo(_job(cfg, ctx), settings)
