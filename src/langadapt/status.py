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


def sweep_status(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per variant of a sweep folder: its state, stages complete, wall time and eval headline."""
    from langadapt.runstore import read_json
    from langadapt.sweep.expand import VARIANTS_DIR
    from langadapt.sweep.store import SWEEP_FILE

    sweep = read_json(Path(sweep_dir) / SWEEP_FILE)
    rows = []
    for entry in sweep["variants"]:
        run = Path(sweep_dir) / VARIANTS_DIR / entry["name"]
        stages = run_status(run) if (run / "run-config.json").exists() else []
        states = [row["status"] for row in stages]
        state = next((s for s in ("failed", "interrupted", "running") if s in states), None)
        if state is None:
            done = states.count("complete")
            state = "complete" if stages and done == len(stages) else "partial" if done else "pending"
        complete = [row for row in stages if row["status"] == "complete" and row["metrics"]]
        last = next((row for row in complete if row["stage"] == "eval"), complete[-1] if complete else None)
        rows.append({
            "variant": entry["name"], "overrides": entry.get("labels", entry["overrides"]), "status": state,
            "stages": f"{states.count('complete')}/{len(stages)}" if stages else "",
            "wall_seconds": sum(row.get("wall_seconds") or 0 for row in stages),
            "headline": {"stage": last["stage"], **last["metrics"]} if last else {},
            "error": next((row.get("error") for row in stages if row.get("error")), None),
        })
    return rows
