"""`langadapt lep`: Learned Embedding Propagation between three model folders, without a run config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from langadapt.lep.config import LepMethod  # the option's choices are the schema's own


def register(app: typer.Typer) -> None:
    app.command("lep")(lep)


def lep(
    base: Annotated[str, typer.Option("--base", help="B: the original base model.")],
    instruct: Annotated[str, typer.Option("--instruct", help="I: B's instruct fine-tune (B's vocabulary).")],
    donor: Annotated[
        str, typer.Option("--donor", help="D: B with the new tokenizer, after CPT (holds token_map.json).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output model folder (must not exist yet).")],
    method: Annotated[
        LepMethod, typer.Option("--method", help="How D's rows are mapped into I's space.")
    ] = "conversion",
    base_tokenizer: Annotated[
        str | None, typer.Option("--base-tokenizer", help="B's tokenizer if not B's own.")
    ] = None,
    token_map: Annotated[
        Path | None, typer.Option("--token-map", help="token_map.json (or its folder) if D lacks one.")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Allow models with custom code.")
    ] = False,
) -> None:
    """Learned Embedding Propagation: the adapted base's embeddings mapped into its instruct sibling."""
    from langadapt.lep.propagate import lep_model
    from langadapt.runstore import MANIFEST, library_versions, staged_output, write_json

    with staged_output(out) as tmp:
        metrics = lep_model(base, instruct, donor, tmp, method, token_map_path=token_map,
                            base_tokenizer=base_tokenizer, trust_remote_code=trust_remote_code)
        manifest = {"command": "lep", "base": base, "instruct": instruct, "donor": donor,
                    "metrics": metrics, "versions": library_versions()}
        write_json(tmp / MANIFEST, manifest)
    residuals = ", ".join(f"{name} {fit['residual']:.3g}" for name, fit in metrics["maps"].items())
    typer.echo(f"{method}: {metrics['propagated_rows']} rows propagated (fit residual {residuals}), "
               f"{metrics['chat_rows_copied']} chat rows from the instruct model → {out}")
