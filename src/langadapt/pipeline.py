"""The stage registry and the runner behind `langadapt run`.

A stage is a function `fn(cfg, ctx) -> metrics` registered with `@stage(...)` in its package's
`stages.py`. The runner owns everything else: ordering, skipping stages whose manifest still matches,
temporary folders, atomic commits, manifests, logs. Stages never touch the run store themselves::

    @stage("vocab", needs=("data",), uses=("models.base", "models.tokenizer"))
    def vocab_stage(cfg: RunConfig, ctx: StageContext) -> dict:
        corpus = ctx.inputs["data"] / "corpus"      # upstream folders, already complete
        ...                                          # write outputs into ctx.out
        return {"chars_per_token": 3.1}              # numbers -> manifest["metrics"]

Put the few numbers worth a glance under `metrics["summary"]` (label -> number); `langadapt status`
shows them. A stage is skipped when its manifest has the same config hash (its section + the `uses` keys + its
`version`) and the same input fingerprints (upstream stages' fingerprints + external files). A stage that
ran gets a new fingerprint, so everything downstream of it runs again.
"""

from __future__ import annotations

import glob
import importlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.runstore import RunStore, Timer, fingerprint_path, library_versions, stable_hash

# The one pipeline order. A stage runs when its config section is present.
PIPELINE = ("data", "vocab", "pack", "embed", "cpt", "lep", "translate", "sft", "dpo", "eval", "report")


# Packages whose `stages` module registers stages when imported.
STAGE_PACKAGES = ("data", "vocab", "embeddings", "train", "lep", "translate", "evaluate", "report")

log = logging.getLogger("langadapt")

StageFn = Callable[[RunConfig, "StageContext"], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """A registered pipeline stage and what decides whether it must run again."""

    name: str
    fn: StageFn
    needs: tuple[str, ...] = ()  # upstream stages that must be enabled; their folders are in ctx.inputs
    after: tuple[str, ...] = ()  # upstream stages used when enabled (e.g. cpt reads embed's model if any)
    section: str | None = None  # the config section; the stage is enabled when it is not null
    uses: tuple[str, ...] = ()  # other dotted config keys whose values change the output
    external_inputs: Callable[[RunConfig], Iterable[str]] | None = None  # files / model refs read
    preflight: Callable[[RunConfig], None] | None = None  # cheap checks run by `validate` and `run`
    version: int = 1  # bump when the outputs change meaning, to invalidate old stage folders

    def enabled(self, cfg: RunConfig) -> bool:
        return self.section is None or getattr(cfg, self.section, None) is not None


_REGISTRY: dict[str, Stage] = {}


def stage(
    name: str,
    *,
    needs: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    section: str | None = "",
    uses: tuple[str, ...] = (),
    external_inputs: Callable[[RunConfig], Iterable[str]] | None = None,
    preflight: Callable[[RunConfig], None] | None = None,
    version: int = 1,
) -> Callable[[StageFn], StageFn]:
    """Register `fn` as pipeline stage `name`. `section` defaults to the stage name."""
    if name not in PIPELINE:
        raise ValueError(f"stage {name!r} is not in the pipeline order {PIPELINE}")
    for upstream in (*needs, *after):
        if PIPELINE.index(upstream) >= PIPELINE.index(name):
            raise ValueError(f"stage {name!r} cannot depend on {upstream!r}, which runs after it")

    def register(fn: StageFn) -> StageFn:
        _REGISTRY[name] = Stage(
            name=name, fn=fn, needs=needs, after=after, section=name if section == "" else section,
            uses=uses, external_inputs=external_inputs, preflight=preflight, version=version,
        )
        return fn

    return register


def registered_stages() -> dict[str, Stage]:
    """Import every stage package's `stages` module, then return the registry."""
    for package in STAGE_PACKAGES:
        module = f"langadapt.{package}.stages"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return dict(_REGISTRY)


def plan(cfg: RunConfig) -> list[Stage]:
    """The enabled stages of `cfg` in pipeline order."""
    stages = registered_stages()
    planned = []
    for name in PIPELINE:
        if name in stages and stages[name].enabled(cfg):
            planned.append(stages[name])
    enabled = {s.name for s in planned}
    for item in planned:
        missing = [n for n in item.needs if n not in enabled]
        if missing:
            raise LangadaptError(
                f"stage '{item.name}' needs stage(s) {', '.join(missing)} — add the "
                f"'{missing[0]}' section to the config"
            )
    return planned


def check(cfg: RunConfig) -> list[Stage]:
    """Everything `langadapt validate` checks: the plan and each stage's cheap preflight."""
    from langadapt.models import check_model_ref

    planned = plan(cfg)
    RunStore(cfg.output_dir).check_writable_location()
    for ref in (cfg.models.base, cfg.models.instruct, cfg.models.tokenizer):
        if ref is not None:
            check_model_ref(ref, trust_remote_code=cfg.models.trust_remote_code)
    for item in planned:
        if item.preflight is not None:
            item.preflight(cfg)
    return planned


@dataclass
class StageContext:
    """What a stage function gets besides the config: where to write and what upstream produced."""

    name: str
    cfg: RunConfig
    out: Path  # a temporary folder; renamed to run_dir/<name> when the stage returns
    run_dir: Path
    inputs: dict[str, Path]  # folders of completed upstream stages (enabled ones only)
    key: str  # fingerprint of this stage's config + inputs
    store: RunStore
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("langadapt"))

    @cached_property
    def work(self) -> Path:
        """Scratch space that survives a crash and is reused by a re-run with the same key."""
        return self.store.work_dir(self.name, self.key)

    def model_from(self, *stages: str) -> str:
        """The model folder written by the first of `stages` that ran, else the configured base model."""
        for name in stages:
            if name in self.inputs and (self.inputs[name] / "model").is_dir():
                return str(self.inputs[name] / "model")
        return self.cfg.models.base


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    metrics: dict[str, Any]


def run_pipeline(
    cfg: RunConfig,
    *,
    force: Iterable[str] = (),
    until: str | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> list[StageResult]:
    """Run the enabled stages in order, skipping those whose outputs are still valid."""
    planned = check(cfg)
    names = [s.name for s in planned]
    force = set(force)
    for name in (*force, *([until] if until else [])):
        if name not in names:
            raise LangadaptError(
                f"stage '{name}' is not part of this run — choose one of: {', '.join(names)}"
            )
    if until:
        planned = planned[: names.index(until) + 1]

    store = RunStore(cfg.output_dir)
    results: list[StageResult] = []
    with store.locked():
        store.save_run_config(cfg.model_dump(mode="json"), names)
        fingerprints: dict[str, str] = {}
        for item in planned:
            inputs = {n: store.stage_dir(n) for n in (*item.needs, *item.after) if n in fingerprints}
            config_hash = _config_hash(item, cfg)
            input_fps = {f"stage:{n}": fingerprints[n] for n in inputs}
            input_fps.update(_external_fingerprints(item, cfg))
            key = stable_hash([config_hash, input_fps])
            previous = store.manifest(item.name)
            if (
                item.name not in force
                and previous is not None
                and previous.get("config_hash") == config_hash
                and previous.get("inputs") == input_fps
            ):
                fingerprints[item.name] = previous["fingerprint"]
                store.log_event(item.name, "skipped")
                if on_stage:
                    on_stage(item.name, "skipped")
                results.append(StageResult(item.name, "skipped", 0.0, previous.get("metrics", {})))
                continue
            if on_stage:
                on_stage(item.name, "running")
            manifest = _execute(item, cfg, store, inputs, config_hash, input_fps, key)
            fingerprints[item.name] = manifest["fingerprint"]
            if on_stage:
                on_stage(item.name, "complete")
            results.append(StageResult(item.name, "ran", manifest["wall_seconds"], manifest["metrics"]))
    return results


def _execute(
    item: Stage,
    cfg: RunConfig,
    store: RunStore,
    inputs: dict[str, Path],
    config_hash: str,
    input_fps: dict[str, str],
    key: str,
) -> dict[str, Any]:
    tmp = store.begin(item.name)
    stage_log = logging.getLogger(f"langadapt.{item.name}")
    handler = logging.FileHandler(tmp / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("langadapt").addHandler(handler)
    ctx = StageContext(item.name, cfg, tmp, store.root, inputs, key, store, stage_log)
    store.log_event(item.name, "started", key=key)
    committed = False
    try:
        with Timer() as timer:
            metrics = item.fn(cfg, ctx) or {}
        manifest = {
            "stage": item.name,
            "config_hash": config_hash,
            "inputs": input_fps,
            "fingerprint": uuid.uuid4().hex[:16],  # new every execution: downstream must follow
            "config": _stage_config(item, cfg),
            "versions": library_versions(),
            "started_at": timer.started_at,
            "ended_at": timer.ended_at,
            "wall_seconds": round(timer.seconds, 3),
            "metrics": metrics,
        }
        store.commit(item.name, tmp, manifest)
        committed = True
        store.log_event(item.name, "completed", wall_seconds=manifest["wall_seconds"])
        return manifest
    except BaseException as exc:
        store.log_event(item.name, "failed", error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    finally:
        logging.getLogger("langadapt").removeHandler(handler)
        handler.close()
        if not committed:
            store.discard(tmp)


def _stage_config(item: Stage, cfg: RunConfig) -> dict[str, Any]:
    dumped = cfg.model_dump(mode="json")
    section = {item.section: dumped.get(item.section)} if item.section else {}
    return {**section, **{key: _dotted(dumped, key) for key in item.uses}}


def _config_hash(item: Stage, cfg: RunConfig) -> str:
    return stable_hash({"config": _stage_config(item, cfg), "seed": cfg.seed, "version": item.version})


def _external_fingerprints(item: Stage, cfg: RunConfig) -> dict[str, str]:
    if item.external_inputs is None:
        return {}
    prints = {}
    for ref in item.external_inputs(cfg):
        if ref.startswith("builtin:") or not any(ch in ref for ch in "/*?["):
            prints[f"ref:{ref}"] = ref
            continue
        matches = sorted(glob.glob(ref)) if any(ch in ref for ch in "*?[") else [ref]
        if not matches or not all(Path(m).exists() for m in matches):
            prints[f"ref:{ref}"] = ref  # a hub id or similar: the name is the fingerprint
            continue
        for match in matches:
            prints[f"file:{match}"] = fingerprint_path(match)
    return prints


def _dotted(data: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def headline_metrics(manifest: dict[str, Any]) -> dict[str, Any]:
    """The few numbers a stage put under `metrics["summary"]`, shown by `langadapt status`."""
    summary = manifest.get("metrics", {}).get("summary", {})
    return summary if isinstance(summary, dict) else {}
