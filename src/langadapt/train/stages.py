"""The training stages: `sft` (instruction tuning / calibration) and `dpo` (preference alignment).

Both train the newest model upstream — `lep`, else `cpt`, else `embed`, else `models.base` (dpo: `sft` first)
— and write `<stage>/model/` (merged, standalone, checked by `langadapt check`) and, with LoRA,
`<stage>/adapter/`. SFT also writes the generated training sets to `sft/data/`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage

TUNING_USES = ("models.base", "models.instruct", "models.tokenizer", "models.trust_remote_code", "target_language")


def _files_preflight(paths: Iterable[Any], where: str) -> None:
    """Each file exists and its first row has a known format (cheap: `validate` runs it)."""
    from langadapt.data.instruct import detect_format, read_records

    for path in paths:
        first = next(read_records(path), None)
        if first is None:
            raise LangadaptError(f"{where}: '{path}' holds no rows")
        detect_format(first[1], f"{path}:{first[0]}")


def _chat_template_preflight(setting: str | None, where: str) -> None:
    from pathlib import Path

    if setting not in (None, "chatml") and not Path(setting).is_file():
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


def _sft_inputs(cfg: RunConfig) -> Iterable[str]:
    assert cfg.sft is not None
    yield from (str(p) for p in cfg.sft.data)
    if cfg.sft.self_calibration is not None:
        yield from (str(p) for p in cfg.sft.self_calibration.prompts)
        yield original_model(cfg)


def _sft_preflight(cfg: RunConfig) -> None:
    import os

    from langadapt.data.instruct import COPY_TASK_INSTRUCTIONS

    sft = cfg.sft
    assert sft is not None
    _files_preflight(sft.data, "sft.data")
    _chat_template_preflight(sft.chat_template, "sft")
    if sft.copy_task is not None:
        copy_task_source(cfg)
        if sft.copy_task.instructions is None and cfg.target_language not in COPY_TASK_INSTRUCTIONS:
            raise LangadaptError(f"no built-in copy-task instructions for '{cfg.target_language}' — set "
                                 "sft.copy_task.instructions")
    if sft.self_calibration is not None:
        _files_preflight(sft.self_calibration.prompts, "sft.self_calibration.prompts")
        judge = sft.self_calibration.judge
        if judge is not None and not os.environ.get(judge.api_key_env):
            raise LangadaptError(f"sft.self_calibration.judge needs an API key in the environment variable "
                                 f"{judge.api_key_env}, which is not set — export it before the run")


def _job(cfg: RunConfig, ctx: StageContext, *upstream: str) -> Any:
    from langadapt.train.sft import TuningJob

    model = ctx.model_from(*upstream)
    return TuningJob(
        model=model,
        tokenizer=model if model != cfg.models.base else cfg.models.base_tokenizer,  # an upstream folder has its own
        original_tokenizer=cfg.models.base_tokenizer,
        out=ctx.out,
        work=ctx.work,
        seed=cfg.seed,
        trust_remote_code=cfg.models.trust_remote_code,
        extra_metrics={"trained_model": model},
    )


@stage("sft", needs=("data",), after=("embed", "cpt", "lep"), uses=TUNING_USES, external_inputs=_sft_inputs,
       preflight=_sft_preflight)
def sft_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.data.corpus import corpus_file, read_texts
    from langadapt.train.sft import gather_sft_data, run_sft

    assert cfg.sft is not None
    job = _job(cfg, ctx, "lep", "cpt", "embed")
    conversations, sources = gather_sft_data(
        cfg.sft, language=cfg.target_language, seed=cfg.seed,
        corpus_texts=lambda: read_texts(corpus_file(ctx.inputs["data"], copy_task_source(cfg))),
        original_model=original_model(cfg), trust_remote_code=cfg.models.trust_remote_code,
        data_dir=ctx.out / "data", cache_dir=ctx.work,
    )
    metrics = run_sft(job, cfg.sft, conversations)
    return {"sources": sources, **metrics}


def _dpo_preflight(cfg: RunConfig) -> None:
    assert cfg.dpo is not None
    _files_preflight(cfg.dpo.data, "dpo.data")
    _chat_template_preflight(cfg.dpo.chat_template, "dpo")


@stage("dpo", after=("sft", "lep", "cpt", "embed"), uses=TUNING_USES,
       external_inputs=lambda cfg: [str(p) for p in cfg.dpo.data], preflight=_dpo_preflight)
def dpo_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.data.instruct import load_preferences
    from langadapt.train.dpo import run_dpo

    assert cfg.dpo is not None
    pairs, report = load_preferences(cfg.dpo.data)
    metrics = run_dpo(_job(cfg, ctx, "sft", "lep", "cpt", "embed"), cfg.dpo, pairs)
    return {"files": report.to_dict(), **metrics}
