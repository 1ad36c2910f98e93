"""`validate`, `plan` and `status` on a sweep: every variant checked, priced, listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.errors import ConfigError
from langadapt.plan.architecture import SHIPPED
from tests.report.test_variants import fake_sweep
from tests.tiny import REPO

SWEEP = REPO / "examples" / "sweep-eu.yaml"
runner = CliRunner()
LEP = REPO / "examples" / "lep-eu.yaml"
NAMES = ["vocab-extended_lep-swap", "vocab-extended_lep-conversion", "vocab-optimized_lep-swap",
         "vocab-optimized_lep-conversion"]


@pytest.fixture(autouse=True)
def constructed_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The examples name the constructed child; `make child` would build it — here a folder with its config."""
    folder = tmp_path / "home" / "models" / "smollm2-135m-child-brackets" / "model"
    folder.mkdir(parents=True)
    shutil.copy(SHIPPED / "smollm2-135m.json", folder / "config.json")
    monkeypatch.setenv("LANGADAPT_HOME", str(tmp_path / "home"))
    return folder


def test_validate_checks_every_variant_of_the_example() -> None:
    result = runner.invoke(app, ["validate", str(SWEEP)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "sweep 'sweep-eu', 4 variants" in output
    assert all(f"{name}: data → vocab → pack → embed → cpt → lep → sft → dpo → eval → report" in output
               for name in NAMES)


def test_validate_names_the_variant_a_value_breaks(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(SWEEP.read_text().replace("data/eu/", f"{REPO}/examples/data/eu/")
                      .replace("optimized: {method: optimized, keep: 24576, vocab_size: 16000}",
                               "optimized: {method: optimized, vocab_size: 16000}"))
    result = runner.invoke(app, ["validate", str(config)])
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "variant 'vocab-optimized_lep-swap': 'vocab': method 'optimized' needs 'keep'" in message
    assert "variant 'vocab-optimized_lep-conversion'" in message and "vocab-extended" not in message


def test_plan_prices_each_variant_and_counts_shared_stages_once() -> None:
    result = runner.invoke(app, ["plan", str(SWEEP), "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [v["run"] for v in plan["variants"]] == [f"sweep-eu.{name}" for name in NAMES]
    cpt = [next(s for s in v["stages"] if s["stage"] == "cpt") for v in plan["variants"]]
    assert [s["made_by"] for s in cpt] == [f"sweep-eu.{NAMES[0]}"] * 2 + [f"sweep-eu.{NAMES[2]}"] * 2
    own = sum(s["flops"] or 0 for v in plan["variants"] for s in v["stages"] if s["made_by"] == v["run"])
    assert plan["total"]["flops"] == own == sum(v["total"]["flops"] for v in plan["variants"]) - cpt[1]["flops"] \
        - cpt[3]["flops"]


def test_status_of_a_sweep_folder_lists_its_variants(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path)
    result = runner.invoke(app, ["status", str(root), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [(r["variant"], r["status"], r["stages"]) for r in rows] == [
        ("vocab-extended_lep-swap", "complete", "4/4"), ("vocab-extended_lep-conversion", "complete", "4/4"),
        ("vocab-optimized_lep-swap", "complete", "4/4"), ("vocab-optimized_lep-conversion", "complete", "4/4")]
    assert rows[2]["overrides"] == {"vocab.method": "optimized", "lep.method": "swap"}
    table = runner.invoke(app, ["status", str(root)]).output
    assert table.count("complete") == 4 and "optimized," in table


def test_the_lep_example_sweeps_three_methods_into_the_constructed_child(constructed_child: Path) -> None:
    result = runner.invoke(app, ["validate", str(LEP)])
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "sweep 'lep-eu', 3 variants" in output
    assert all(f"lep-{method}: data → vocab → pack → embed → cpt → lep → eval → report" in output
               for method in ("swap", "overlap", "conversion"))
    plan = json.loads(runner.invoke(app, ["plan", str(LEP), "--json"]).output)
    cpt = [next(s for s in v["stages"] if s["stage"] == "cpt") for v in plan["variants"]]
    assert [s["made_by"] for s in cpt] == ["lep-eu.lep-swap"] * 3  # one adapted parent for the three methods
    shutil.rmtree(constructed_child)
    result = runner.invoke(app, ["validate", str(LEP)])
    message = str(result.exception)
    assert result.exit_code != 0 and message.count("build it once with `make child`") == 1  # said once, not per variant
    assert "lep-eu.yaml: all variants: builtin:smollm2-135m-child-brackets is constructed" in message
