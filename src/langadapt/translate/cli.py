"""`langadapt translate`: translate instruction files outside a run.

    langadapt translate examples/data/en/alpaca-mini.jsonl --config examples/translate-eu.yaml --out runs/alpaca-eu
    langadapt translate prefs.jsonl --to eu --set backend.kind=endpoint --set backend.url=http://127.0.0.1:8000/v1 \\
        --set backend.model=my-model --out runs/prefs-eu

`--config` is a run config (its `translate:` section and `target_language` are used) or a YAML holding just
the section. Files on the command line replace the section's datasets (named by file stem). OUT receives
NAME.jsonl, NAME.dropped.jsonl and manifest.json through a temporary folder. The segment cache (`--cache`,
else the section's `cache`, else `$LANGADAPT_HOME/cache/translate.sqlite`, shared by every run of this
user) survives failures, so running the command again, into any OUT, pays for nothing twice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from langadapt.errors import LangadaptError


def register(app: typer.Typer) -> None:
    app.command("translate")(translate)


def translate(
    out: Annotated[Path, typer.Option("--out", help="Output folder; must not exist yet.")],
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Instruction files (default: the config's datasets).", show_default=False),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config, or a YAML with a translate: section.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a key, e.g. --set backend.num_beams=4.")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--from", help="Source language (default: the section's, else en).")
    ] = None,
    target: Annotated[str | None, typer.Option("--to", help="Target language (default: the config's).")] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Segment cache (default: $LANGADAPT_HOME/cache/translate.sqlite).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Translate only the first N rows of each file.")] = None,
) -> None:
    """Translate instruction / preference files (alpaca, chat, Q/A, preference) with masking, caching and filters."""
    from langadapt.models import langadapt_home
    from langadapt.runstore import library_versions, staged_output, write_json
    from langadapt.train.cli import section_from
    from langadapt.translate.config import DatasetSpec, TranslateConfig
    from langadapt.translate.core import run_translation
    from langadapt.translate.stages import preflight_settings

    settings, run = section_from(config, "translate", TranslateConfig, overrides or [])
    if files:
        names = [_dataset_name(f) for f in files]
        if len(set(names)) < len(names):
            raise LangadaptError(f"two files share a name ({', '.join(names)}) — rename one or put them in a config")
        settings.datasets = {n: DatasetSpec(path=f.resolve(), limit=limit) for n, f in zip(names, files, strict=True)}
    elif limit is not None:
        settings.datasets = {k: v.model_copy(update={"limit": limit}) for k, v in settings.datasets.items()}
    if source:
        settings.source_language = source
    language = target or settings.target_language or (run.language if config is not None else None)
    if language is None:
        raise LangadaptError("no target language — pass --to (e.g. --to eu) or a --config with target_language")
    if language == settings.source_language:
        raise LangadaptError(f"source and target are both '{language}' — pass --to / --from")
    preflight_settings(settings, language, where="translate")
    out = out.resolve()
    cache_path = (cache or settings.cache or langadapt_home() / "cache" / "translate.sqlite").resolve()
    with staged_output(out) as tmp:
        metrics = run_translation(settings, target=language, out_dir=tmp, cache_path=cache_path)
        write_json(tmp / "manifest.json", {"translate": settings.model_dump(mode="json"), "target_language": language,
                                           "versions": library_versions(), "metrics": metrics})
    summary = "  ".join(f"{k}={v}" for k, v in metrics["summary"].items())
    typer.echo(f"translate done: {out}  {summary}  model calls={metrics['backend']['calls']}")


def _dataset_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json", ".ndjson", ".parquet"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "data"
