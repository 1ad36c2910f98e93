"""`langadapt report RUN_DIR [--compare OTHER_RUN ...] --out report.html`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dir: Annotated[Path, typer.Argument(help="A run's output_dir.", show_default=False)],
        compare: Annotated[
            list[Path] | None, typer.Option("--compare", help="Another run to compare (repeatable).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Where to write the page (default RUN_DIR/report.html).")
        ] = None,
        title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    ) -> None:
        """Render one HTML page (tables + plots) from a run's manifests, optionally beside other runs."""
        from langadapt.report.html import load_run, render_report
        from langadapt.runstore import write_text_atomic

        page = render_report(load_run(run_dir), [load_run(p) for p in compare or []], title=title)
        target = out or run_dir / "report.html"
        write_text_atomic(target, page)
        typer.echo(str(target))
