"""`langadapt embed init`: resize a model to a new tokenizer and initialise the new rows, without a run config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

embed_app = typer.Typer(help="Embedding surgery: give a model a new tokenizer without losing what it knows.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(embed_app, name="embed")


@embed_app.command("init")
def init(
    model: Annotated[str, typer.Option("--model", help="Model to resize: builtin:NAME, a folder or a hub id.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", help="New tokenizer folder with token_map.json (from `vocab train`).")],
    out: Annotated[Path, typer.Option("--out", help="Output model folder (must not exist yet).")],
    method: Annotated[str, typer.Option("--method", help="mean | normal | random.")] = "mean",
    base_tokenizer: Annotated[str | None, typer.Option("--base-tokenizer", help="Tokenizer the new one extends (default: the model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of normal/random init.")] = 42,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Allow a model with custom code.")] = False,
) -> None:
    """Write an HF model folder whose vocabulary is the new tokenizer's (manifest.json holds the counts)."""
    from langadapt.embeddings.surgery import embed_model
    from langadapt.errors import LangadaptError
    from langadapt.runstore import MANIFEST, library_versions, staged_output, write_json

    if method not in ("mean", "normal", "random"):
        raise LangadaptError(f"unknown --method '{method}' — choose mean, normal or random")
    with staged_output(out) as tmp:
        metrics = embed_model(model, tokenizer, tmp, method, base_tokenizer=base_tokenizer, seed=seed,  # type: ignore[arg-type]
                              trust_remote_code=trust_remote_code)
        manifest = {"command": "embed init", "model": model, "tokenizer": str(tokenizer), "seed": seed,
                    "metrics": metrics, "versions": library_versions()}
        write_json(tmp / MANIFEST, manifest)
    typer.echo(f"{method}: {metrics['new_rows']} new rows ({metrics['fallback_rows']} from the mean row), "
               f"{metrics['kept_rows']} kept → {out}")
