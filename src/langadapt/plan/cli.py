"""`langadapt plan CONFIG [CONFIG ...] [--gpu H100] [--mfu 0.4] [--json]`: price a run before renting GPUs.

Several configs are priced as the variants of one comparison, each on its own and summed; a config with a
`sweep:` section is priced per variant, each stage its variants share counted once in the total.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from langadapt.plan.memory import SCHEME_LABELS


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


def plan(
    configs: Annotated[list[Path], typer.Argument(help="Run config(s); several are priced as variants.",
                                                  show_default=False)],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU to price on: H100, H200, B200, A100, L40S, ...")] = "H100",
    mfu: Annotated[float, typer.Option("--mfu", help="Assumed share of the GPU's dense bf16 peak reached.")] = 0.4,
    model_config: Annotated[Path | None, typer.Option(
        "--model-config", help="config.json to use for models.base (and models.instruct).")] = None,
    sample: Annotated[int, typer.Option("--sample", help="Documents per source to measure tokens/word on.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Tokens, FLOPs, memory per device (every sharding scheme) and wall time per training stage; never loads
    weights, never trains (see docs/plan.md for the formulas)."""
    from langadapt.plan.core import PlanOptions, plan_variants
    from langadapt.sweep.expand import load_sweep

    options = PlanOptions(gpu=gpu, mfu=mfu, model_config=model_config, sample_documents=sample)
    sweeps = [load_sweep(path) for path in configs]
    is_sweep = len(sweeps) == 1 and bool(sweeps[0].variants)  # one sweep: its variants share stages
    result = plan_variants([cfg for sweep in sweeps for cfg in sweep.runs], options, shared=is_sweep)
    console = Console()
    if as_json:
        console.print_json(json.dumps(result))
        return
    for variant in result["variants"]:
        _print_variant(console, variant)
    if len(result["variants"]) > 1:
        total = result["total"]
        counted = " (each shared stage once)" if is_sweep else ""
        console.print(f"[bold]all {len(result['variants'])} variants{counted}[/bold]: {_flops(total['flops'])} FLOPs, "
                      f"{_duration(total['wall_seconds'])} wall, {total['gpu_hours']:,.0f} GPU-hours"
                      + _unpriced(total["not_priced"]))


def _print_variant(console: Console, variant: dict) -> None:
    gpu = variant["gpu"]
    table = Table(title=f"plan: {variant['run']} on {gpu['name']} ({gpu['bf16_tflops']:g} TFLOPS dense bf16, "
                        f"{gpu['memory_gb']:g} GB) at {variant['mfu']:.0%} utilisation", title_justify="left")
    for column in ("stage", "tokens", "trains", "devices", "FLOPs", "wall", "memory/device"):
        table.add_column(column, overflow="fold", justify="left" if column in ("stage", "trains") else "right")
    for stage in variant["stages"]:
        memory = stage.get("configured_memory_bytes")
        fits = "" if memory is None else (" ✓" if memory <= gpu["memory_gb"] * 1e9 else " ✗ too big")
        trains = "" if stage["mode"] is None else (
            f"{stage['mode']}: {_count(stage['trained_parameters'])} of {_count(stage['parameters'])}")
        devices = "" if stage["mode"] is None else f"{stage['devices']} × {SCHEME_LABELS[stage['scheme']]}"
        priced = stage["mode"] is not None
        maker = stage.get("made_by", variant["run"])
        name = stage["stage"] if maker == variant["run"] else f"{stage['stage']} (shared: made by {maker})"
        table.add_row(name, _count(stage["tokens"]), trains, devices,
                      _flops(stage["flops"]) if priced else "", _duration(stage["wall_seconds"]) if priced else "",
                      ("" if memory is None else _gb(memory) + " GB") + fits)
    console.print(table)
    for stage in variant["stages"]:
        console.print(f"  {stage['stage']} tokens: {stage['tokens_basis']}", highlight=False)
        if stage["architecture"]:
            console.print(f"  {stage['stage']} model: {stage['architecture']}", highlight=False)
    for stage in variant["stages"]:
        if stage["memory"]:
            _print_memory(console, stage, gpu["memory_gb"])
    total = variant["total"]
    console.print(f"total: {_flops(total['flops'])} FLOPs, {_duration(total['wall_seconds'])} wall, "
                  f"{total['gpu_hours']:,.1f} GPU-hours" + _unpriced(total["not_priced"]) + "\n")


def _print_memory(console: Console, stage: dict, capacity_gb: float) -> None:
    ckpt = "on" if stage["gradient_checkpointing"] else "off"
    table = Table(title=f"{stage['stage']} memory per device, GB (gradient checkpointing {ckpt} in the config)",
                  title_justify="left")
    for column in ("", "sharding", "weights", "grads", "optimizer", "activations", "total", "w/ checkpointing"):
        table.add_column(column, justify="right" if column not in ("", "sharding") else "left")
    for row in stage["memory"]:
        mark = "▶" if row["configured"] else ""
        table.add_row(mark, f"{SCHEME_LABELS[row['scheme']]} ({row['devices']})", _gb(row["weights"]),
                      _gb(row["gradients"]), _gb(row["optimizer"]),
                      f"{_gb(row['activations'])} / {_gb(row['activations_checkpointed'])}",
                      _fit(row["total"], capacity_gb), _fit(row["total_checkpointed"], capacity_gb))
    console.print(table)


def _fit(value: int, capacity_gb: float) -> str:
    return _gb(value) + ("" if value <= capacity_gb * 1e9 else " ✗")


def _unpriced(stages: list[str]) -> str:
    return f" (not priced: {', '.join(stages)} — see their tokens line)" if stages else ""


def _gb(value: float) -> str:
    return f"{value / 1e9:,.1f}"


def _count(value: float | None) -> str:
    if value is None:
        return "?"
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.2f}{suffix}"
    return f"{value:.0f}"


def _flops(value: float | None) -> str:
    return "?" if value is None else f"{value:.2e}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 1 else "<1 s"
