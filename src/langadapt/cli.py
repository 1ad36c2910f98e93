"""The `langadapt` command line: verbs call the library, they hold no logic of their own.

Run-level verbs live here (validate, run, status, demo, models). Stage verbs (`vocab train`, `embed init`,
`eval`, ...) live in each stage package's `cli.py`, which exposes `register(app)`.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from langadapt.errors import LangadaptError

app = typer.Typer(
    name="langadapt",
    help="Adapt a pretrained LLM to a new language with one YAML config: `langadapt run CONFIG` runs its stages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold tokens; never print them
)
models_app = typer.Typer(help="Resolve and cache models (builtin:NAME, local folders, hub ids).", no_args_is_help=True)
app.add_typer(models_app, name="models")

stdout = Console()
stderr = Console(stderr=True)

# Packages whose `cli.py` registers verbs besides the stage packages (pipeline.PACKAGES): tools over a config.
TOOL_PACKAGES = ("plan",)

@app.callback()
def _global_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    setup_logging(level)


def setup_logging(level: int = logging.INFO) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars drown the stage log; training has its own
    logger = logging.getLogger("langadapt")
    logger.setLevel(level)
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        logger.addHandler(RichHandler(console=stderr, show_path=False, markup=False, rich_tracebacks=False))
    logger.propagate = False


# --------------------------------------------------------------------------------------------------------
# Run-level verbs.
# --------------------------------------------------------------------------------------------------------

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).", show_default=False)]


@app.command()
def validate(
    config: ConfigArg,
    no_files: Annotated[bool, typer.Option(
        "--no-files", help="Don't read input files (corpora, instruction sets, task files): check a config "
        "written for another machine.")] = False,
) -> None:
    """Check a config (schema, files, models, stage order) without running anything; a sweep: every variant."""
    import contextlib

    from langadapt.pipeline import check
    from langadapt.preflight import without_input_files
    from langadapt.sweep.expand import check_variants, load_sweep

    sweep = load_sweep(config)
    with without_input_files() if no_files else contextlib.nullcontext():
        planned = (check_variants(sweep.variants, str(config)) if sweep.variants else
                   {sweep.base.name: check(sweep.base)})
    cfg = sweep.base
    if sweep.variants:
        stdout.print(f"ok: {config} — sweep '{cfg.name}', {len(sweep.variants)} variants → {cfg.output_dir}/variants/")
        for variant in sweep.variants:
            stdout.print(f"  {variant.name}: " + " → ".join(s.name for s in planned[variant.cfg.name]), highlight=False)
    else:
        stdout.print(f"ok: {config} — run '{cfg.name}' → {cfg.output_dir}")
        stdout.print("stages: " + " → ".join(s.name for s in planned[cfg.name]))
    absent = sorted({ref for run in sweep.runs for ref in _absent_inputs(run, planned[run.name])}) if no_files else []
    if absent:
        stdout.print(f"not checked (--no-files): {len(absent)} input file(s) absent here — " + ", ".join(absent),
                     highlight=False, soft_wrap=True)


def _absent_inputs(cfg: Any, planned: list[Any]) -> list[str]:
    """Local input paths the stages will read that are not on this machine (hub ids are not paths)."""
    import glob

    absent = []
    for item in planned:
        for ref in item.external_inputs(cfg) if item.external_inputs else ():
            if Path(ref).is_absolute() and not glob.glob(ref) and ref not in absent:
                absent.append(ref)
    return absent


@app.command()
def run(
    config: ConfigArg,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Re-run this stage even if up to date (repeatable).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Override output_dir.")] = None,
) -> None:
    """Run the configured stages in pipeline order, skipping those already complete and unchanged. A config
    with a `sweep:` section runs every variant, each stage made once for all variants that share it."""
    from langadapt.sweep.expand import load_sweep

    overrides = {"output_dir": str(output_dir.resolve())} if output_dir else None
    _run_and_report(load_sweep(config, overrides=overrides), force=force or [], until=until)


def _announce(stage: str, event: str) -> None:
    if event == "running":
        stderr.print(f"[bold]▶ {stage}[/bold]")
    elif event == "skipped":
        stderr.print(f"[dim]= {stage}: up to date, skipped[/dim]")


def _run_and_report(sweep: Any, *, force: list[str], until: str | None) -> None:
    from langadapt.pipeline import run_pipeline
    from langadapt.sweep.runner import run_sweep

    if not sweep.variants:
        results = run_pipeline(sweep.base, force=force, until=until, on_stage=_announce)
        ran = sum(r.status == "ran" for r in results)
        stdout.print(f"done: {ran} stage(s) ran, {len(results) - ran} up to date — langadapt status "
                     f"{sweep.base.output_dir}")
        return

    def announce_variant(variant: Any, index: int) -> None:
        stderr.print(f"[bold cyan]■ variant {index + 1}/{len(sweep.variants)}: {variant.name}[/bold cyan]")

    outcome = run_sweep(sweep, force=force, until=until, on_variant=announce_variant, on_stage=_announce)
    ran = sum(r.status == "ran" for results in outcome.values() for r in results)
    total = sum(len(results) for results in outcome.values())
    root = sweep.root
    stdout.print((root / "variants.md").read_text(encoding="utf-8"), markup=False, highlight=False)
    stdout.print(f"done: {len(outcome)} variants, {ran} stage(s) ran, {total - ran} up to date or shared — "
                 f"{root}/variants.md, {root}/report.html, langadapt status {root}")


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run's output_dir.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show each stage of a run: status, time and headline metrics (a sweep folder: one row per variant)."""
    from langadapt.status import run_status
    from langadapt.sweep.store import is_sweep

    if is_sweep(run_dir):
        _sweep_status(run_dir, as_json)
        return
    rows = run_status(run_dir)
    if as_json:
        stdout.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"run {run_dir}", title_justify="left")
    for column in ("stage", "status", "ended", "wall", "metrics"):
        table.add_column(column, overflow="fold")
    colours = {"complete": "green", "failed": "red", "interrupted": "red", "running": "yellow", "pending": "dim"}
    for row in rows:
        metrics = "  ".join(f"{k}={_fmt(v)}" for k, v in row["metrics"].items())
        if row.get("error"):
            metrics = row["error"]
        for line in row.get("warnings", []):
            metrics += f"\n[red]{escape(line)}[/red]"
        wall = f"{row['wall_seconds']:.1f}s" if row.get("wall_seconds") is not None else ""
        style = colours.get(row["status"], "")
        ended = (row.get("ended_at") or "").replace("T", " ").split("+")[0]
        table.add_row(row["stage"], f"[{style}]{row['status']}[/{style}]", ended, wall, metrics)
    stdout.print(table)


def _sweep_status(sweep_dir: Path, as_json: bool) -> None:
    from langadapt.status import sweep_status

    rows = sweep_status(sweep_dir)
    if as_json:
        stdout.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"sweep {sweep_dir} ({len(rows)} variants; one: langadapt status "
                        f"{sweep_dir}/variants/NAME)", title_justify="left")
    for column in ("variant", "values", "status", "stages", "wall", "headline"):
        table.add_column(column, overflow="fold")
    colours = {"complete": "green", "failed": "red", "interrupted": "red", "running": "yellow", "pending": "dim"}
    for row in rows:
        style = colours.get(row["status"], "")
        values = ", ".join(str(v) for v in row["overrides"].values())
        headline = row["error"] or "  ".join(f"{k}={_fmt(v)}" for k, v in row["headline"].items())
        table.add_row(row["variant"], values, f"[{style}]{row['status']}[/{style}]", row["stages"],
                      f"{row['wall_seconds']:.1f}s", headline)
    stdout.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command()
def demo(
    config: Annotated[
        Path | None, typer.Option("--config", help="Demo config (default: examples/demo-eu.yaml).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Override output_dir (default: runs/demo-eu).")
    ] = None,
) -> None:
    """Run the bundled Basque demo: the real SmolLM2-135M-Instruct model and a real Basque corpus."""
    from langadapt.sweep.expand import load_sweep

    config = config or _find_demo_config()
    overrides = {"output_dir": str(output_dir.resolve())} if output_dir else None
    sweep = load_sweep(config, overrides=overrides)
    stderr.print(f"demo: {config} → {sweep.base.output_dir}")
    _run_and_report(sweep, force=[], until=None)


def _find_demo_config() -> Path:
    candidates = [
        Path.cwd() / "examples" / "demo-eu.yaml",
        Path(__file__).resolve().parents[2] / "examples" / "demo-eu.yaml",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise LangadaptError(
        "cannot find examples/demo-eu.yaml — run from the langadapt repository root or pass --config"
    )


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument(help="builtin:NAME, a local folder or a hub id.")]) -> None:
    """Resolve a model into a local HF folder (materialising builtins into $LANGADAPT_HOME) and print it."""
    from langadapt.models import resolve

    stdout.print(str(resolve(name)))


@models_app.command("list")
def models_list() -> None:
    """List the builtin models and whether they are materialised."""
    from langadapt.models import BUILTIN_MODELS, langadapt_home

    for name, spec in BUILTIN_MODELS.items():
        folder = langadapt_home() / "models" / name
        state = str(folder) if (folder / "config.json").exists() else "not materialised yet"
        stdout.print(f"builtin:{name}  ({spec.license}; needs {spec.wheel})  {state}")


# --------------------------------------------------------------------------------------------------------
# Stage verbs: registered by the stage packages.
# --------------------------------------------------------------------------------------------------------


def _register_stage_verbs() -> None:
    from langadapt.pipeline import PACKAGES

    for package in (*PACKAGES, *TOOL_PACKAGES):
        importlib.import_module(f"langadapt.{package}.cli").register(app)


def registered_verbs() -> set[str]:
    commands = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    return commands | {g.name for g in app.registered_groups if g.name}


_register_stage_verbs()


def main() -> None:
    """Console entry point: user errors become one `error:` line and a non-zero exit code."""
    try:
        app(prog_name="langadapt")
    except LangadaptError as exc:
        stderr.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
