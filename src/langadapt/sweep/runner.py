"""`langadapt run` on a sweep: every variant through the ordinary runner, on one shared stage store.

The variants run one after another in their listed order, each `run_pipeline` on a `VariantStore`: a stage
whose key another variant already made is linked, not recomputed; a re-run skips everything complete and a
killed sweep resumes. At the end the comparison table is written (`variants.md`, `variants.csv`,
`report.html` in the sweep folder) and each variant's report, which shows that table, is re-rendered if a
later variant changed it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from langadapt.pipeline import StageResult, plan, run_pipeline
from langadapt.runstore import RunStore, now_iso, write_json
from langadapt.sweep.expand import VARIANTS_DIR, Sweep, Variant, check_variants
from langadapt.sweep.store import SHARED, SWEEP_FILE, SharedStages, VariantStore

REPORT = "report"


def run_sweep(
    sweep: Sweep,
    *,
    force: Iterable[str] = (),
    until: str | None = None,
    on_variant: Callable[[Variant, int], None] | None = None,
    on_stage: Callable[[str, str], None] | None = None,
) -> dict[str, list[StageResult]]:
    """Run every variant (checked first, all of them); returns each variant's stage results."""
    check_variants(sweep.variants, sweep.source)
    force = list(force)
    results: dict[str, list[StageResult]] = {}
    with RunStore(sweep.root).locked():
        shared = SharedStages(sweep.root / SHARED)
        shared.remove_leftovers()
        save_sweep(sweep)
        last_ran = -1
        for index, variant in enumerate(sweep.variants):
            if on_variant:
                on_variant(variant, index)
            results[variant.name] = run_pipeline(variant.cfg, force=force, until=until, on_stage=on_stage,
                                                 store=VariantStore(variant.cfg.output_dir, shared))
            if any(r.status == "ran" for r in results[variant.name]):
                last_ran = index
        if until is None:
            _refresh_reports(sweep, results, last_ran, shared)
            shared.prune(sorted((sweep.root / VARIANTS_DIR).iterdir()))
        write_comparison(sweep.root)
    return results


def save_sweep(sweep: Sweep) -> None:
    """`sweep.json`: which variants the sweep holds and what each overrides (read by status and the table)."""
    write_json(sweep.root / SWEEP_FILE, {
        "name": sweep.base.name, "config": str(Path(sweep.source).resolve()), "saved_at": now_iso(),
        "keys": list(dict.fromkeys(key for v in sweep.variants for key in v.overrides)),
        "variants": [{"name": v.name, "overrides": v.overrides, "labels": v.labels} for v in sweep.variants],
    })


def write_comparison(root: Path) -> list[Path]:
    from langadapt.report.variants import write_tables

    return write_tables(root)


def _refresh_reports(sweep: Sweep, results: dict[str, list[StageResult]], last_ran: int,
                     shared: SharedStages) -> None:
    """A report rendered before a later variant changed shows an outdated table: render it again."""
    if last_ran < 0:
        return
    shared.made.clear()  # `force` re-makes what this pass made too (each shared report still once)
    for index, variant in enumerate(sweep.variants):
        ran_report = any(r.name == REPORT and r.status == "ran" for r in results[variant.name])
        if (index == last_ran and ran_report) or REPORT not in {s.name for s in plan(variant.cfg)}:
            continue
        run_pipeline(variant.cfg, force=[REPORT], store=VariantStore(variant.cfg.output_dir, shared))
