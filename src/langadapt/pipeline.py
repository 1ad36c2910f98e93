"""The stage graph and the runner behind `langadapt run`.

A stage is a function `fn(cfg, ctx) -> metrics` registered with `@stage(...)` from any module; it brings
its own config section, says where it runs (`needs` / `after` / `before`, `consumes`) and what it
`produces` for later stages. The order is the graph's topological order, so adding a stage is one file.
The runner owns everything else: skipping stages whose manifest still matches, temporary folders,
atomic commits, manifests, logs. Stages never touch the run store themselves::

    @stage("vocab", config=VocabConfig, needs=("data",), produces=("tokenizer",))
    def vocab_stage(cfg: RunConfig, ctx: StageContext) -> dict:
        corpus = ctx.inputs["data"] / "corpus"      # earlier stages' folders, already complete
        ...                                          # write outputs into ctx.out
        return {"chars_per_token": 3.1}              # numbers -> manifest["metrics"]

Every enabled earlier stage is an input: a stage is skipped when its manifest has the same config hash
(its section + the `uses` keys + `version`) and the same input fingerprints; one that ran gets a new
fingerprint, so everything after it runs again.
"""

from __future__ import annotations

import glob
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import create_model

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.registry import Registry
from langadapt.runstore import RunStore, Timer, fingerprint_path, library_versions, stable_hash, stage_key
from langadapt.schema import Section

# The one list of langadapt's packages: each may hold `stages.py` (its stages) and `cli.py` (its verbs).
PACKAGES = ("data", "vocab", "embeddings", "train", "lep", "translate", "evaluate", "report")

log = logging.getLogger("langadapt")

Metrics = dict[str, Any]
StageFn = Callable[[RunConfig, "StageContext"], Metrics]
SectionType = type[Section] | Callable[[], type[Section]]  # a schema, or a builder of one
ALL = "*"  # `after=(ALL,)`: run after every other stage (the report)


@dataclass(frozen=True)
class Stage:
    """A registered pipeline stage: where it runs, what it reads and writes, what decides a re-run."""

    name: str
    fn: StageFn
    needs: tuple[str, ...] = ()  # stages that must be enabled; this one runs after them
    after: tuple[str, ...] = ()  # runs after these when they are enabled (ALL: after every other stage)
    before: tuple[str, ...] = ()  # runs before these when they are enabled
    consumes: tuple[str, ...] = ()  # artifact kinds read from *every* producer (eval: each "model")
    produces: tuple[str, ...] = ()  # artifact folders in its stage folder for later stages: "model", ...
    chat: bool = False  # its model answers through a chat template (eval's default `chat_models`)
    section: str | None = None  # config section; the stage is enabled when it is set (None: always)
    config: SectionType | None = None  # the section's schema (added to RunConfig)
    uses: tuple[str, ...] = ()  # other dotted config keys whose values change the output
    unhashed: tuple[str, ...] = ()  # dotted keys of how it runs, not what it makes (workers, executor)
    external_inputs: Callable[[RunConfig], Iterable[str]] | None = None  # files / model refs read
    preflight: Callable[[RunConfig], None] | None = None  # cheap checks run by `validate` and `run`
    version: int = 1  # bump when the outputs change meaning, to invalidate old stage folders

    def enabled(self, cfg: RunConfig) -> bool:
        return self.section is None or getattr(cfg, self.section, None) is not None


STAGES: Registry[Stage] = Registry("stage", tuple(f"langadapt.{p}.stages" for p in PACKAGES),
                                   module_of=lambda item: item.fn.__module__)


def stage(
    name: str,
    *,
    config: SectionType | None = None,
    section: str | None = "",
    needs: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    before: tuple[str, ...] = (),
    consumes: tuple[str, ...] = (),
    produces: tuple[str, ...] = (),
    chat: bool = False,
    uses: tuple[str, ...] = (),
    unhashed: tuple[str, ...] = (),
    external_inputs: Callable[[RunConfig], Iterable[str]] | None = None,
    preflight: Callable[[RunConfig], None] | None = None,
    version: int = 1,
) -> Callable[[StageFn], StageFn]:
    """Register `fn` as pipeline stage `name`; its config section is `section` (default: the name)."""

    def register(fn: StageFn) -> StageFn:
        STAGES.add(name, Stage(
            name=name, fn=fn, needs=needs, after=after, before=before, consumes=consumes, produces=produces,
            chat=chat, section=name if section == "" else section, config=config, uses=uses, unhashed=unhashed,
            external_inputs=external_inputs, preflight=preflight, version=version,
        ))
        return fn

    return register


def registered_stages() -> dict[str, Stage]:
    """Every registered stage, in registration order (the built-in packages' stages imported first)."""
    return STAGES.items()


def stage_order(stages: dict[str, Stage]) -> list[str]:
    """The stages in an order that honours every edge; ties keep registration order. A cycle is refused."""
    names = list(stages)
    edges: dict[str, set[str]] = {name: set() for name in names}  # name -> stages that must come first
    for name, item in stages.items():
        for upstream in (*item.needs, *item.after):
            if upstream == ALL:
                edges[name] |= {n for n in names if n != name and ALL not in stages[n].after}
            elif upstream in stages:
                edges[name].add(upstream)
        for downstream in item.before:
            if downstream in stages:
                edges[downstream].add(name)
        for kind in item.consumes:
            edges[name] |= {n for n in names if n != name and kind in stages[n].produces}
    order: list[str] = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and edges[n] <= set(order)]
        if not ready:
            stuck = [n for n in names if n not in order]
            raise LangadaptError(f"the stages {', '.join(stuck)} wait for each other (a cycle in needs/after/"
                                 "before) — fix the stage declarations")
        order.append(ready[0])
    return order


def pipeline_order() -> list[str]:
    """The names of all registered stages in pipeline order (status, report)."""
    return stage_order(registered_stages())


# --------------------------------------------------------------------------------------------------------
# The run config's schema: RunConfig's own fields plus one optional section per registered stage.
# --------------------------------------------------------------------------------------------------------


def run_config_schema() -> type[RunConfig]:
    """RunConfig with a field for every registered stage's section (`data` is RunConfig's own)."""
    sections = []
    for item in registered_stages().values():
        if item.section and item.config is not None and item.section not in RunConfig.model_fields:
            schema = item.config if isinstance(item.config, type) else item.config()
            sections.append((item.section, schema))
    return _schema(tuple(sections))


@lru_cache(maxsize=32)
def _schema(sections: tuple[tuple[str, type[Section]], ...]) -> type[RunConfig]:
    fields: dict[str, Any] = {name: (schema | None, None) for name, schema in sections}
    return create_model("RunConfig", __base__=RunConfig, __doc__=RunConfig.__doc__, **fields)


# --------------------------------------------------------------------------------------------------------
# Planning and checking.
# --------------------------------------------------------------------------------------------------------


def plan(cfg: RunConfig) -> list[Stage]:
    """The enabled stages of `cfg` in pipeline order."""
    stages = registered_stages()
    known = {item.section for item in stages.values()}
    for key in type(cfg).model_fields:
        if key not in RunConfig.model_fields and getattr(cfg, key, None) is not None and key not in known:
            raise LangadaptError(f"the config has a '{key}' section but no stage '{key}' is registered — remove the "
                                 "section or import the module that defines the stage")
    planned = [stages[name] for name in stage_order(stages) if stages[name].enabled(cfg)]
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
    """What a stage function gets besides the config: where to write and what earlier stages produced."""

    name: str
    cfg: RunConfig
    out: Path  # a temporary folder; renamed to run_dir/<name> when the stage returns
    run_dir: Path
    inputs: dict[str, Path]  # folders of the completed earlier stages (enabled ones), in pipeline order
    key: str  # fingerprint of this stage's config + inputs
    store: RunStore
    earlier: list[Stage] = field(default_factory=list)  # the stages of `inputs`, in order
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("langadapt"))

    @cached_property
    def work(self) -> Path:
        """Scratch space that survives a crash and is reused by a re-run with the same key."""
        return self.store.work_dir(self.name, self.key)

    def upstream(self, kind: str) -> Path | None:
        """The `kind` folder ("model", "tokenizer", ...) of the nearest earlier stage producing it."""
        for item in reversed(self.earlier):
            if kind in item.produces and (self.inputs[item.name] / kind).exists():
                return self.inputs[item.name] / kind
        return None

    def upstream_model(self) -> str:
        """The newest model of the run so far: the nearest earlier model folder, else `models.base`."""
        found = self.upstream("model")
        return str(found) if found is not None else self.cfg.models.base

    def upstream_tokenizer(self) -> str:
        """The tokenizer the next model trains with: the nearest earlier tokenizer folder, else the base's."""
        found = self.upstream("tokenizer")
        return str(found) if found is not None else self.cfg.models.base_tokenizer

    def tokenizer_for(self, model: str) -> str:
        """The tokenizer that goes with `model` (a stage folder has its own; the base may have models.tokenizer)."""
        return self.cfg.models.tokenizer_for(model)

    def stage_models(self) -> dict[str, tuple[str, bool]]:
        """stage name → (model folder, chat) for every earlier stage that wrote a model."""
        return {item.name: (str(self.inputs[item.name] / "model"), item.chat) for item in self.earlier
                if "model" in item.produces and (self.inputs[item.name] / "model").is_dir()}


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "skipped"
    seconds: float
    metrics: Metrics


def run_pipeline(
    cfg: RunConfig,
    *,
    force: Iterable[str] = (),
    until: str | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    store: RunStore | None = None,
) -> list[StageResult]:
    """Run the enabled stages in order, skipping those whose outputs are still valid.

    `store`: where the stage folders live (default: a RunStore on `output_dir`; a sweep passes a store whose
    stage folders are shared by its variants, see `langadapt.sweep.store`).
    """
    if cfg.sweep is not None:
        raise LangadaptError(f"run '{cfg.name}' has a sweep section — run its variants with `langadapt run` "
                             "(langadapt.sweep.run_sweep)")
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

    store = store or RunStore(cfg.output_dir)
    results: list[StageResult] = []
    with store.locked():
        store.save_run_config(cfg.model_dump(mode="json"), names)
        fingerprints: dict[str, str] = {}
        done: list[Stage] = []
        for item in planned:
            inputs = {s.name: store.stage_dir(s.name) for s in done}
            config_hash = _config_hash(item, cfg)
            input_fps = {f"stage:{n}": fingerprints[n] for n in inputs}
            input_fps.update(_external_fingerprints(item, cfg))
            key = stage_key(config_hash, input_fps)
            previous = store.completed(item.name, key, force=item.name in force)
            if previous is not None:
                fingerprints[item.name] = previous["fingerprint"]
                done.append(item)
                store.log_event(item.name, "skipped")
                if on_stage:
                    on_stage(item.name, "skipped")
                results.append(StageResult(item.name, "skipped", 0.0, previous.get("metrics", {})))
                continue
            if on_stage:
                on_stage(item.name, "running")
            ctx = StageContext(item.name, cfg, store.begin(item.name, key), store.root, inputs, key, store, list(done),
                               logging.getLogger(f"langadapt.{item.name}"))
            manifest = _execute(item, ctx, config_hash, input_fps)
            fingerprints[item.name] = manifest["fingerprint"]
            done.append(item)
            if on_stage:
                on_stage(item.name, "complete")
            results.append(StageResult(item.name, "ran", manifest["wall_seconds"], manifest["metrics"]))
    return results


def stage_identities(cfg: RunConfig) -> dict[str, str]:
    """Each enabled stage's key as the runner will compute it when every earlier stage runs once: equal for two
    configs exactly when a sweep's shared store would make the stage once for both (what `plan` prices)."""
    identities: dict[str, str] = {}
    for item in plan(cfg):
        inputs = {f"stage:{name}": value for name, value in identities.items()}
        inputs.update(_external_fingerprints(item, cfg))
        identities[item.name] = stage_key(_config_hash(item, cfg), inputs)
    return identities


def _execute(item: Stage, ctx: StageContext, config_hash: str, input_fps: dict[str, str]) -> Metrics:
    store, tmp = ctx.store, ctx.out
    handler = logging.FileHandler(tmp / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("langadapt").addHandler(handler)
    store.log_event(item.name, "started", key=ctx.key)
    committed = False
    try:
        with Timer() as timer:
            metrics = item.fn(ctx.cfg, ctx) or {}
        manifest = {
            "stage": item.name,
            "config_hash": config_hash,
            "inputs": input_fps,
            "fingerprint": uuid.uuid4().hex[:16],  # new every execution: downstream must follow
            "config": _stage_config(item, ctx.cfg),
            "versions": library_versions(),
            "started_at": timer.started_at,
            "ended_at": timer.ended_at,
            "wall_seconds": round(timer.seconds, 3),
            "metrics": metrics,
        }
        store.commit(item.name, tmp, manifest, ctx.key)
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
    """Of what decides the stage's output: its config without the `unhashed` keys, the seed, its version."""
    config = _stage_config(item, cfg)
    for key in item.unhashed:
        *parents, leaf = key.split(".")
        holder = _dotted(config, ".".join(parents)) if parents else config
        if isinstance(holder, dict):
            holder.pop(leaf, None)
    return stable_hash({"config": config, "seed": cfg.seed, "version": item.version})


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

