"""What `langadapt status RUN_DIR` shows: each stage's state, timing, headline metrics and warnings.

A stage's warnings are the one-line strings it put under `metrics["warnings"]` (the eval stage's
regressions beyond their interval, LEP with the instruct model equal to the base): shown loudly, not buried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError
from langadapt.pipeline import headline_metrics, pipeline_order
from langadapt.runstore import RunStore


def run_status(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per stage of the latest run (planned stages first, then any other complete stage folder)."""
    store = RunStore.existing(run_dir)
    saved = store.run_config()
    planned = list(saved["stages"]) if saved else []
    order = pipeline_order()
    present = [name for name in order if store.manifest(name) is not None and name not in planned]
    if not planned and not present:
        raise LangadaptError(f"'{run_dir}' holds no langadapt run — run `langadapt run CONFIG` first")

    last_event: dict[str, dict[str, Any]] = {}
    for event in store.events():
        last_event[event["stage"]] = event
    running = store.is_locked()

    rows = []
    rank = {name: index for index, name in enumerate(order)}
    for name in sorted(planned + present, key=lambda n: rank.get(n, len(rank))):
        manifest = store.manifest(name)
        event = last_event.get(name, {})
        row: dict[str, Any] = {"stage": name, "status": "pending", "metrics": {}}
        if event.get("event") == "failed":
            row.update(status="failed", error=event.get("error"), ended_at=event.get("time"))
        elif event.get("event") == "started":
            # The lock is released by the kernel when a run dies, so 'started' without it means killed.
            row.update(status="running" if running else "interrupted", ended_at=None)
        elif manifest is not None:
            row.update(
                status="complete",
                ended_at=manifest.get("ended_at"),
                wall_seconds=manifest.get("wall_seconds"),
                metrics=headline_metrics(manifest),
                warnings=stage_warnings(manifest),
            )
        rows.append(row)
    return rows


def stage_warnings(manifest: dict[str, Any]) -> list[str]:
    warnings = manifest.get("metrics", {}).get("warnings", [])
    return [str(line) for line in warnings] if isinstance(warnings, list) else []
