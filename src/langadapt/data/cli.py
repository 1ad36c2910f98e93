"""`langadapt data ...` verbs. Heavy imports stay inside the commands so `langadapt --help` stays fast."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

data_app = typer.Typer(help="Inspect the data layer: corpus statistics, filters, duplicates.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("stats")
def stats(
    target: Annotated[
        Path, typer.Argument(help="A run config (YAML) to measure, or a run folder to read.", show_default=False)
    ],
    out: Annotated[Path | None, typer.Option("--out", help="Also write the statistics to this JSON file.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="Count tokens with this tokenizer (default: models.tokenizer / models.base)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Documents, characters, words, tokens, tokens/word, languages, removed and duplicate counts per source,
    and the throughput of each step (MB/s, documents/s).

    On a config, runs the `data` stage's cleaning, language ID and dedup without writing a corpus; on a run
    folder, shows what its `data` (and `pack`) stages recorded.
    """
    from langadapt.cli import stdout

    report = _read_run(target) if target.is_dir() else _measure(target, tokenizer)
    if out is not None:
        from langadapt.runstore import write_json

        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, report)
    if as_json:
        stdout.print_json(json.dumps(report, default=str))
    else:
        _print_tables(report)


def _read_run(folder: Path) -> dict[str, Any]:
    from langadapt.errors import LangadaptError
    from langadapt.runstore import RunStore

    store = RunStore(folder)
    data = store.manifest("data")
    if data is None:
        raise LangadaptError(f"'{folder}' has no complete data stage — run 'langadapt run CONFIG --until data' first")
    report = {key: data["metrics"].get(key) for key in ("tokenizer", "sources", "eval", "throughput")}
    pack = store.manifest("pack")
    if pack is not None:
        report["pack"] = {k: v for k, v in pack["metrics"].items() if k != "summary"}
    return report


def _measure(config: Path, tokenizer_ref: str | None) -> dict[str, Any]:
    from langadapt.config import load_config
    from langadapt.data.ingest import ingest_corpus
    from langadapt.models import load_tokenizer

    cfg = load_config(config)
    ref = tokenizer_ref or cfg.models.base_tokenizer
    tokenizer = load_tokenizer(ref, trust_remote_code=cfg.models.trust_remote_code)
    report = ingest_corpus(cfg.data, seed=cfg.seed, target_language=cfg.target_language, tokenizer=tokenizer)
    return {"tokenizer": ref, **report}


def _print_tables(report: dict[str, Any]) -> None:
    """One table per group, a column per source (stays narrow however many filters fired)."""
    from rich.table import Table

    from langadapt.cli import stdout

    for group in ("sources", "eval"):
        stats = report.get(group) or {}
        if not stats:
            continue
        table = Table(title=f"{group} (tokens: {report.get('tokenizer')})", title_justify="left")
        table.add_column("")
        for name in stats:
            table.add_column(name, justify="right")
        filters = sorted({k for s in stats.values() for k in s["removed"]})
        languages = sorted({k for s in stats.values() for k in s["languages"]})
        rows = [("language", "language"), ("read", "read"), ("kept", "documents"), ("words", "words"),
                ("tokens", "tokens"), ("tokens/word", "tokens_per_word"), ("duplicates", "duplicates"),
                ("invalid UTF-8", "invalid_utf8")]
        if any("tokens_estimated_from" in s for s in stats.values()):  # data.token_count_every > 1
            rows.insert(5, ("tokens from (documents)", "tokens_estimated_from"))
        for label, key in rows:
            table.add_row(label, *(str(s.get(key) if s.get(key) is not None else "") for s in stats.values()))
        for name in filters:
            table.add_row(f"removed: {name}", *(str(s["removed"].get(name, 0)) for s in stats.values()))
        for code in languages:
            table.add_row(f"detected: {code}", *(str(s["languages"].get(code, 0)) for s in stats.values()))
        stdout.print(table)
    _print_throughput(report.get("throughput"))
    pack = report.get("pack")
    if pack:
        mix = pack["mix"]
        stdout.print(f"pack: {pack['blocks']} blocks of {pack['context_length']} ({pack['strategy']}), packing "
                     f"efficiency {pack['packing_efficiency']:.4f}")
        for name, share in mix["achieved_token_share"].items():
            stdout.print(f"  {name}: {share:.4f} of tokens (requested {mix['requested_token_share'][name]:.4f}), "
                         f"used {mix['repeats'][name]:g}×")


def _print_throughput(throughput: dict[str, Any] | None) -> None:
    """End to end, then per step: core-seconds and the MB/s (of the stage's input) one core would reach."""
    from rich.table import Table

    from langadapt.cli import stdout

    if not throughput:
        return
    work = throughput.get("work_mb")  # absent from manifests written before it was measured
    scratch = f"; work folder {work} MB at its fullest" if work is not None else ""
    table = Table(title=f"throughput: {throughput['input_mb']} MB in {throughput['wall_seconds']} s with "
                        f"{throughput['workers']} workers = {throughput['mb_per_s']} MB/s, "
                        f"{throughput['docs_per_s']} documents/s{scratch}", title_justify="left")
    for column in ("step", "core s", "documents", "MB/s (one core)", "documents/s"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name, step in throughput["steps"].items():
        table.add_row(name, str(step["seconds"]), str(step["documents"]), str(step["mb_per_s"] or ""),
                      str(step["docs_per_s"] or ""))
    stdout.print(table)
