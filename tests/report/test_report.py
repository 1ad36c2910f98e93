"""The HTML report renders what the manifests hold: tables, deltas against the reference, plots, escaping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from langadapt import pipeline
from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.report.html import load_run, render_report
from langadapt.runstore import RunStore


def fake_run(root: Path, name: str, eval_models: dict[str, dict[str, float]]) -> Path:
    store = RunStore(root)
    with store.locked():
        store.save_run_config({"name": name, "target_language": "eu", "models": {"base": "builtin:x"}}, ["data", "cpt", "eval"])
        manifests = {
            "data": {"sources": {"basque": {"documents": 10, "tokens_per_word": 3.5}},
                     "summary": {"documents": 10}},
            "vocab": {"summary": {"new tokens": 100, "basque_dev ×chars/tok": 2.2}},
            "cpt": {"loss_curve": [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0}, {"step": 3, "loss": float("nan")}],
                    "summary": {"final loss": 3.0}},
            "eval": {"models": eval_models, "summary": {}},
        }
        for stage, metrics in manifests.items():
            store.commit(stage, store.begin(stage), {"stage": stage, "metrics": metrics, "wall_seconds": 1.5,
                                                     "config_hash": "h", "versions": {"torch": "2"}})
    return root


def test_report_shows_every_section_with_exact_deltas(tmp_path: Path) -> None:
    models = {"base": {"eu bpc": 4.0, "en bpc": 1.5}, "cpt": {"eu bpc": 2.5, "en bpc": 1.75}}
    page = render_report(load_run(fake_run(tmp_path / "a", "variant-a", models)))
    for heading in ("Run", "Stages", "Data", "Tokenizer", "Training", "Evaluation", "Provenance"):
        assert f"<h2>{heading}</h2>" in page
    assert "<td>cpt</td><td>2.5 <small>(-1.5)</small></td><td>1.75 <small>(+0.25)</small></td>" in page
    assert page.count("<svg") == 3  # chars/token bars, loss curve, bpc bars
    assert "final loss = 3" in page and "<td>3.5</td>" in page


def test_names_from_configs_are_escaped(tmp_path: Path) -> None:
    page = render_report(load_run(fake_run(tmp_path / "a", "x", {"<script>alert(1)</script>": {"eu bpc": 1.0}})))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_other_runs_are_compared_side_by_side(tmp_path: Path) -> None:
    a = load_run(fake_run(tmp_path / "a", "extended", {"cpt": {"eu bpc": 2.5}}))
    b = load_run(fake_run(tmp_path / "b", "optimized", {"cpt": {"eu bpc": 2.4}}))
    page = render_report(a, [b])
    section = page[page.index("<h2>Runs compared</h2>"):]
    assert re.search(r"<td>extended</td><td>cpt</td><td>2\.5</td>.*<td>optimized</td><td>cpt</td><td>2\.4</td>", section)


def test_not_a_run_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(LangadaptError, match="not a run folder"):
        load_run(tmp_path / "missing")
    with pytest.raises(LangadaptError, match="holds no complete stage"):
        load_run(tmp_path)


def test_report_stage_writes_the_page_into_the_run(tmp_path: Path, monkeypatch) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "kaixo"}\n')

    def data(cfg, ctx):
        return {"sources": {"eu": {"documents": 1}}, "summary": {"documents": 1}}

    stages = {"data": pipeline.Stage("data", data), "report": pipeline.registered_stages()["report"]}
    monkeypatch.setattr(pipeline, "registered_stages", lambda: stages)
    cfg = validate_config(
        {"name": "r", "output_dir": str(tmp_path / "run"), "target_language": "eu",
         "models": {"base": "builtin:smollm2-135m-instruct"}, "data": {"sources": {"eu": {"path": str(corpus)}}}, "report": {"title": "Basque <demo>"}},
        base_dir=tmp_path,
    )
    pipeline.run_pipeline(cfg)
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "<title>Basque &lt;demo&gt;</title>" in page and "<td>data</td>" in page
    assert RunStore(tmp_path / "run").manifest("report")["metrics"]["stages"] == ["data"]
