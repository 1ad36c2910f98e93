"""The `report` pipeline stage: render the run's manifests into `<run>/report/report.html`."""

from __future__ import annotations

from typing import Any

from langadapt.config import RunConfig
from langadapt.pipeline import ALL, StageContext, stage
from langadapt.report.config import ReportConfig
from langadapt.report.html import load_run, render_report


def _compared_runs(cfg: RunConfig) -> list[str]:
    # Other runs' eval manifests are inputs too: the report is remade when one of them changes.
    return [str(path / "eval" / "manifest.json") for path in cfg.report.compare_runs] if cfg.report else []


@stage("report", config=ReportConfig, after=(ALL,), produces=("report",), external_inputs=_compared_runs)
def report_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    run = load_run(ctx.run_dir, exclude=("report",))
    others = [load_run(path) for path in cfg.report.compare_runs]
    page = render_report(run, others, title=cfg.report.title)
    (ctx.out / "report.html").write_text(page, encoding="utf-8")
    return {"stages": list(run.manifests), "compared_runs": [o.name for o in others],
            "summary": {"stages reported": len(run.manifests), "bytes": len(page.encode("utf-8"))}}
