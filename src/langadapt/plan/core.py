"""`plan_run`: what one run config will cost — tokens, FLOPs, memory per device, wall time — before it runs.

Reads the config, the models' `config.json` (never weights), the run folder's records when they exist and
local corpora for a sample estimate; trains nothing. `plan_variants` sums the plans of several configs (the
variants of a sweep) so a comparison is priced as a whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.plan.architecture import LINEAR_MODULES, Architecture, find_architecture
from langadapt.plan.flops import flops_per_token
from langadapt.plan.hardware import Gpu, find_gpu
from langadapt.plan.memory import MemoryRow, Scheme, Training, memory_table
from langadapt.plan.tokens import (
    DEFAULT_TOKENS_PER_WORD,
    Count,
    corpus_tokens,
    cpt_tokens,
    pack_tokens,
    training_counter,
    tuning_tokens,
)
from langadapt.train.config import CptConfig, TuningConfig


@dataclass(frozen=True)
class PlanOptions:
    gpu: str = "H100"
    mfu: float = 0.4  # assumed share of the GPU's peak the executed FLOPs reach
    model_config: Path | None = None  # config.json standing in for models.base (and models.instruct)
    sample_documents: int = 200
    default_tokens_per_word: float = DEFAULT_TOKENS_PER_WORD


@dataclass
class StagePlan:
    name: str
    tokens: Count
    architecture: str = ""
    mode: str | None = None
    parameters: int | None = None
    trained_parameters: int | None = None
    devices: int = 1
    scheme: Scheme = "none"
    checkpointing: bool = False
    flops: int | None = None  # model FLOPs
    executed_flops: int | None = None
    wall_seconds: float | None = None
    memory: list[MemoryRow] = field(default_factory=list)

    @property
    def configured_memory(self) -> int | None:
        for row in self.memory:
            if row.configured:
                return row.total_checkpointed if self.checkpointing else row.total
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.name, "tokens": self.tokens.value, "tokens_basis": self.tokens.basis,
            "architecture": self.architecture, "mode": self.mode, "parameters": self.parameters,
            "trained_parameters": self.trained_parameters, "devices": self.devices, "scheme": self.scheme,
            "gradient_checkpointing": self.checkpointing, "flops": self.flops, "executed_flops": self.executed_flops,
            "wall_seconds": self.wall_seconds, "configured_memory_bytes": self.configured_memory,
            "memory": [row.to_dict() for row in self.memory],
        }


@dataclass
class RunPlan:
    name: str
    gpu: Gpu
    mfu: float
    stages: list[StagePlan]

    def training(self) -> list[StagePlan]:
        return [s for s in self.stages if s.mode is not None]

    @property
    def flops(self) -> int:
        return sum(s.flops or 0 for s in self.training())

    @property
    def wall_seconds(self) -> float:
        return sum(s.wall_seconds or 0.0 for s in self.training())

    @property
    def gpu_hours(self) -> float:
        return sum((s.wall_seconds or 0.0) * s.devices for s in self.training()) / 3600

    @property
    def unknown(self) -> list[str]:
        return [s.name for s in self.training() if s.wall_seconds is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.name, "gpu": {"name": self.gpu.name, "bf16_tflops": self.gpu.bf16_tflops,
                                      "memory_gb": self.gpu.memory_gb, "source": self.gpu.source},
            "mfu": self.mfu, "stages": [s.to_dict() for s in self.stages],
            "total": {"flops": self.flops, "wall_seconds": self.wall_seconds, "gpu_hours": self.gpu_hours,
                      "not_priced": self.unknown},
        }


def plan_variants(configs: list[RunConfig], options: PlanOptions, *, shared: bool = False) -> dict[str, Any]:
    """Plans of several configs and their sum. `shared`: the configs are one sweep's variants, which make a stage
    with the same config and inputs once (`pipeline.stage_identities`): the total counts it once, and each
    stage says which variant makes it (`made_by`)."""
    from langadapt.pipeline import stage_identities

    plans = [plan_run(cfg, options) for cfg in configs]
    variants, makers = [], {}
    total: dict[str, Any] = {"flops": 0, "wall_seconds": 0.0, "gpu_hours": 0.0, "not_priced": []}
    for cfg, run in zip(configs, plans, strict=True):
        identities = stage_identities(cfg) if shared else {}
        described = run.to_dict()
        for stage, entry in zip(run.stages, described["stages"], strict=True):
            maker = makers.setdefault((stage.name, identities.get(stage.name, f"{run.name}:{stage.name}")), run.name)
            if shared:
                entry["made_by"] = maker
            if maker != run.name or stage.mode is None:
                continue
            total["flops"] += stage.flops or 0
            total["wall_seconds"] += stage.wall_seconds or 0.0
            total["gpu_hours"] += (stage.wall_seconds or 0.0) * stage.devices / 3600
            if stage.wall_seconds is None:
                total["not_priced"].append(f"{run.name}:{stage.name}")
        variants.append(described)
    return {"variants": variants, "total": total}


def plan_run(cfg: RunConfig, options: PlanOptions) -> RunPlan:
    gpu = find_gpu(options.gpu)
    if not 0 < options.mfu <= 1:
        raise LangadaptError(f"--mfu {options.mfu} must be a share of the peak in (0, 1], e.g. 0.4")
    base = find_architecture(cfg.models.base, model_config=options.model_config)
    adapted = _adapted_architecture(cfg, base)
    run_dir = Path(cfg.output_dir)
    counter = training_counter(cfg.models.base_tokenizer, run_dir if cfg.vocab is not None else None)
    estimate = {"sample": options.sample_documents, "default_tpw": options.default_tokens_per_word}
    stages: list[StagePlan] = []
    corpus = None
    if cfg.pack is None or (cfg.pack.total_tokens is None and not (cfg.cpt and cfg.cpt.max_steps)):
        corpus = corpus_tokens(cfg, counter, **estimate)
        known = [c.value for c in corpus.values()]
        total = sum(v for v in known if v is not None) if all(v is not None for v in known) else None
        stages.append(StagePlan("data", Count(total, "; ".join(c.basis for c in corpus.values()))))
    if cfg.pack is not None:
        packed = pack_tokens(cfg, corpus)
        stages.append(StagePlan("pack", packed))
        if cfg.cpt is not None:
            stages.append(_cpt_plan(cfg, cfg.cpt, adapted, cpt_tokens(cfg, packed), gpu, options.mfu))
    tuned = _tuned_architecture(cfg, adapted, options)
    for name in ("sft", "dpo"):
        section = getattr(cfg, name)
        if section is not None:
            tokens, per_sequence = tuning_tokens(cfg, name, counter, **estimate)
            stages.append(_tuning_plan(cfg, name, section, tuned, tokens, per_sequence, gpu, options.mfu))
    return RunPlan(cfg.name, gpu, options.mfu, stages)


def _adapted_architecture(cfg: RunConfig, base: Architecture) -> Architecture:
    """The base with the vocabulary it trains with after the vocab and embed stages."""
    if cfg.vocab is None:
        return base
    run_dir = Path(cfg.output_dir)
    embedded = run_dir / "embed" / "model" / "config.json"
    if embedded.is_file():
        return base.with_vocab(int(json.loads(embedded.read_text())["vocab_size"]), "the embed stage's model")
    built = run_dir / "vocab" / "tokenizer" / "tokenizer.json"
    if built.is_file():
        from tokenizers import Tokenizer

        return base.with_vocab(Tokenizer.from_file(str(built)).get_vocab_size(with_added_tokens=True),
                               "the vocab stage's tokenizer")
    method, size = cfg.vocab.method, cfg.vocab.vocab_size
    if method in ("bpe", "unigram"):
        return base.with_vocab(size, f"{method} vocab_size")
    kept = base.vocab if method == "extended" else (cfg.vocab.keep or 0)
    return base.with_vocab(kept + size, f"upper bound: {kept:,} kept + {size:,} trained, before the vocab stage ran")


def _tuned_architecture(cfg: RunConfig, adapted: Architecture, options: PlanOptions) -> Architecture:
    """SFT/DPO train the LEP model (the instruct body with the adapted vocabulary) when there is one."""
    if cfg.lep is None or cfg.models.instruct is None:
        return adapted
    instruct = find_architecture(cfg.models.instruct, model_config=options.model_config)
    return instruct.with_vocab(adapted.vocab, "the adapted vocabulary, propagated by LEP")


def _lora_modules(targets: list[str] | str, where: str) -> tuple[str, ...]:
    if targets == "all-linear":
        return LINEAR_MODULES
    unknown = [t for t in targets if t not in LINEAR_MODULES]
    if unknown:
        raise LangadaptError(f"{where}.lora.target_modules {unknown} are not linear layers plan knows — use "
                             f"names among {', '.join(LINEAR_MODULES)} or all-linear")
    return tuple(targets)


def _optimizer_state(name: str) -> int:
    return 2 if "8bit" in name else 8  # AdamW: two fp32 moments; 8-bit AdamW: two 1-byte moments


def _cpt_plan(cfg: RunConfig, cpt: CptConfig, arch: Architecture, tokens: Count, gpu: Gpu, mfu: float) -> StagePlan:
    assert cfg.pack is not None
    lora = cpt.lora_settings
    training = Training(
        arch=arch, mode=cpt.mode, sequence=cfg.pack.context_length, micro_batch=cpt.batch_size,
        train_embeddings=cpt.mode == "embeddings" or (cpt.mode == "lora" and lora.train_embeddings),
        lora_r=lora.r if cpt.mode == "lora" else 0,
        lora_modules=_lora_modules(lora.target_modules, "cpt") if cpt.mode == "lora" else (),
        lora_layers=arch.layers if cpt.mode == "lora" else 0,
        optimizer_state=_optimizer_state(cpt.optimizer), precision=_precision(cpt.precision),
    )
    scheme = launch_scheme(cpt.launch.config_file)
    return _priced("cpt", training, tokens, devices=cpt.launch.num_processes, scheme=scheme,
                   checkpointing=cpt.gradient_checkpointing, attention_sequence=cfg.pack.context_length,
                   reference_forward=False, gpu=gpu, mfu=mfu)


def _tuning_plan(cfg: RunConfig, name: str, section: TuningConfig, arch: Architecture, tokens: Count,
                 per_sequence: float, gpu: Gpu, mfu: float) -> StagePlan:
    lora = section.lora
    train_embeddings = cfg.vocab is not None if lora.train_embeddings == "auto" else bool(lora.train_embeddings)
    is_lora = section.mode == "lora"
    training = Training(
        arch=arch, mode=section.mode, sequence=section.max_length,
        micro_batch=section.batch_size * (2 if name == "dpo" else 1),  # DPO: chosen and rejected together
        train_embeddings=train_embeddings or not is_lora, lora_r=lora.r if is_lora else 0,
        lora_modules=_lora_modules(lora.target_modules, name) if is_lora else (),
        lora_layers=(len({layer % arch.layers for layer in lora.layers}) if lora.layers else arch.layers)
        if is_lora else 0,
        reference_copy=name == "dpo" and not is_lora, precision=_precision(section.precision),
    )
    return _priced(name, training, tokens, devices=1, scheme="none", checkpointing=section.gradient_checkpointing,
                   attention_sequence=max(1, round(per_sequence)), reference_forward=name == "dpo", gpu=gpu, mfu=mfu)


def _priced(name: str, training: Training, tokens: Count, *, devices: int, scheme: Scheme, checkpointing: bool,
            attention_sequence: int, reference_forward: bool, gpu: Gpu, mfu: float) -> StagePlan:
    per_token = flops_per_token(training, attention_sequence=attention_sequence, checkpointed=checkpointing,
                                reference_forward=reference_forward)
    plan = StagePlan(
        name, tokens, architecture=training.arch.source, mode=training.mode, parameters=training.arch.parameters,
        trained_parameters=training.trained_parameters, devices=devices, scheme=scheme, checkpointing=checkpointing,
        memory=memory_table(training, devices, scheme),
    )
    if tokens.value is not None:
        plan.flops = per_token.model * tokens.value
        plan.executed_flops = per_token.executed * tokens.value
        plan.wall_seconds = plan.executed_flops / (devices * gpu.bf16_tflops * 1e12 * mfu)
    return plan


def _precision(setting: str) -> str:
    return "bf16" if setting in ("auto", "fp16") else setting  # auto: bf16 on the GPU being priced


def launch_scheme(config_file: Path | None) -> Scheme:
    """The sharding an accelerate config file asks for (DeepSpeed ZeRO stage or FSDP); none without one."""
    if config_file is None or not Path(config_file).is_file():
        return "none"
    try:
        settings = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise LangadaptError(f"cpt.launch.config_file '{config_file}' is not valid YAML — fix it") from None
    kind = str(settings.get("distributed_type", "")).upper()
    if kind == "DEEPSPEED":
        stage = int((settings.get("deepspeed_config") or {}).get("zero_stage", 0))
        zero: dict[int, Scheme] = {1: "zero1", 2: "zero2", 3: "zero3"}
        return zero.get(stage, "none")
    return "fsdp" if kind == "FSDP" else "none"
