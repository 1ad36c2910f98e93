"""`langadapt status`: each stage's headline numbers, and its warnings (regressions, LEP with B = I) shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from langadapt import cli
from langadapt.cli import app
from langadapt.lep.stages import SAME_MODEL
from langadapt.runstore import RunStore
from langadapt.status import run_status
from tests.evaluate.constructed import constructed_metrics


def write_run(root: Path, manifests: dict[str, dict[str, Any]]) -> Path:
    store = RunStore(root)
    with store.locked():
        store.save_run_config({"name": "s"}, list(manifests))
        for stage, metrics in manifests.items():
            store.commit(stage, store.begin(stage), {"stage": stage, "metrics": metrics, "wall_seconds": 2.0,
                                                     "ended_at": "2025-01-01T00:00:00+00:00"})
    return root


def test_status_rows_carry_the_eval_regressions_and_the_lep_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = constructed_metrics(tmp_path)
    lep = {"same_model": True, "warnings": [SAME_MODEL], "summary": {"chat rows": 17}}
    run = write_run(tmp_path / "run", {"lep": lep, "eval": metrics})
    rows = {row["stage"]: row for row in run_status(run)}
    assert rows["lep"]["warnings"] == [SAME_MODEL]
    assert rows["eval"]["warnings"] == [
        "regression: cpt ood bpc 5.1 (+1.5 vs base, 95 % interval +1.5 to +1.5)",
        "regression: sft ood bpc 5.1 (+1.5 vs base, 95 % interval +1.5 to +1.5)",
    ]
    assert rows["eval"]["metrics"]["regressions"] == 2
    assert rows["eval"]["metrics"]["sft ood bpc"] == 5.1

    monkeypatch.setattr(cli.stdout, "_width", 400)  # the console read its width when langadapt.cli was imported
    shown = CliRunner().invoke(app, ["status", str(run)])
    assert shown.exit_code == 0, shown.output
    assert "regression: cpt ood bpc 5.1 (+1.5 vs base, 95 % interval +1.5 to +1.5)" in shown.output
    assert SAME_MODEL[:60] in shown.output
    as_json = CliRunner().invoke(app, ["status", str(run), "--json"])
    assert json.loads(as_json.output)[1]["warnings"] == rows["eval"]["warnings"]


def test_a_stage_without_warnings_has_an_empty_list(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", {"data": {"summary": {"documents": 3}}})
    assert run_status(run) == [{"stage": "data", "status": "complete", "metrics": {"documents": 3}, "warnings": [],
                                "ended_at": "2025-01-01T00:00:00+00:00", "wall_seconds": 2.0}]
