"""`langadapt cpt`: continued pre-training outside a run, and the entry point of multi-process training.

    langadapt cpt --model runs/x/embed/model --data runs/x/pack/dataset --out runs/cpt-a --set max_steps=200
    torchrun --nproc_per_node 8 -m langadapt.cli cpt --model ... --data ... --out ... --config run.yaml
    accelerate launch --config_file configs/accelerate/deepspeed-zero2.yaml -m langadapt.cli cpt ...

Every process trains; rank 0 writes `OUT/` (model/, tensorboard/, metrics.json) through a temporary folder
beside it. Checkpoints live in `OUT.work/` (or `--work`); running the same command again resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from langadapt.errors import LangadaptError


def register(app: typer.Typer) -> None:
    app.command("cpt")(cpt)


def cpt(
    model: Annotated[str, typer.Option("--model", help="Model folder or reference (e.g. the embed stage's model).")],
    data: Annotated[Path, typer.Option("--data", help="Packed dataset folder (input_ids + position_ids).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder; must not exist yet.")],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="YAML/JSON whose `cpt:` section (and `seed`, `models.trust_remote_code`) to use."),
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a cpt key, e.g. --set max_steps=100 (repeatable).")
    ] = None,
    tokenizer: Annotated[str | None, typer.Option("--tokenizer", help="Tokenizer to save with the model.")] = None,
    work: Annotated[Path | None, typer.Option("--work", help="Checkpoint folder (default: OUT.work).")] = None,
) -> None:
    """Continued pre-training of a model on a packed dataset (full, embeddings-only or LoRA)."""
    from langadapt.train.cpt import CptJob, run_cpt

    settings, seed, trust_remote_code = settings_from(config, overrides or [])
    out = out.resolve()
    if out.exists():
        raise LangadaptError(f"--out '{out}' already exists — choose a new folder or delete it")
    if not out.parent.is_dir():
        raise LangadaptError(f"the folder of --out ('{out.parent}') does not exist — create it first")
    rank_zero = int(os.environ.get("RANK", "0")) == 0
    tmp = out.with_name(f".tmp-{out.name}")
    if rank_zero:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    job = CptJob(
        settings=settings, model=model, data=data.resolve(), out=tmp,
        work=(work or out.with_name(out.name + ".work")).resolve(), tokenizer=tokenizer, seed=seed,
        trust_remote_code=trust_remote_code,
    )
    try:
        metrics = run_cpt(job)
    except BaseException:
        if rank_zero:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if rank_zero:
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(tmp, out)
        shutil.rmtree(job.work, ignore_errors=True)
        summary = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics["summary"].items())
        typer.echo(f"cpt done: {out / 'model'}  {summary}")


def settings_from(config: Path | None, overrides: list[str]) -> tuple[Any, int, bool]:
    """The cpt settings, seed and trust_remote_code from a config file (a run config or just a cpt mapping)."""
    import yaml
    from pydantic import ValidationError

    from langadapt.config import describe_errors
    from langadapt.train.config import CptConfig

    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if config is not None:
        if not config.is_file():
            raise LangadaptError(f"--config '{config}' is not a file — pass a run config or a YAML with a cpt: section")
        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise LangadaptError(f"--config '{config}' must be a mapping with a cpt: section")
        data, base_dir = loaded, config.resolve().parent
    section = dict(data.get("cpt") or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LangadaptError(f"--set '{item}' is not KEY=VALUE — e.g. --set max_steps=100")
        target = section
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = yaml.safe_load(value)
    try:
        settings = CptConfig.model_validate(section, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise LangadaptError("cpt settings: " + "; ".join(describe_errors(exc, CptConfig))) from None
    seed = int(data.get("seed", 42))
    trust_remote_code = bool((data.get("models") or {}).get("trust_remote_code", False))
    return settings, seed, trust_remote_code
