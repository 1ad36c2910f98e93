"""The HTML report renders what the manifests hold: every eval source with intervals and regressions, what each
stage bought, sample generations, one loss plot per kind, stage tokens, the LEP identity warning, escaping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from langadapt import pipeline
from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.lep.stages import SAME_MODEL
from langadapt.report.html import load_run, render_report
from langadapt.runstore import RunStore
from tests.evaluate.constructed import constructed_metrics

SECTIONS = ("Run", "Warnings", "Stages", "Data", "Tokenizer", "Embedding initialisation", "Training",
            "Learned Embedding Propagation", "Evaluation", "What each stage bought", "Sample generations",
            "Provenance")


def curve(*losses: float) -> list[dict[str, float]]:
    return [{"step": i + 1, "loss": loss} for i, loss in enumerate(losses)]


def stage_manifests(eval_metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A full run's metrics (what each stage really records, trimmed), with a constructed eval stage."""
    return {
        "data": {"sources": {"basque": {"language": "eu", "documents": 10, "tokens_per_word": 3.5}},
                 "summary": {"documents": 10}},
        "vocab": {"summary": {"new tokens": 100, "basque_dev ×chars/tok": 2.2}},
        "pack": {"tokens": 262144, "packing_efficiency": 1.0, "summary": {"blocks": 1024}},
        "embed": {"method": "mean", "new_rows": 100, "fallback_rows": 2, "init_seconds": 0.5, "summary": {}},
        "cpt": {"loss_curve": curve(9.0, 8.0, float("nan")), "tokens_seen": 12288, "summary": {"final loss": 8.0}},
        "lep": {"method": "conversion", "same_model": True, "warnings": [SAME_MODEL], "propagated_rows": 62071,
                "maps": {"embed_tokens": {"fit_rows": 62033, "residual": 6.5e-16, "identity_deviation": 9.8e-16}},
                "summary": {"chat rows": 17}},
        "sft": {"loss_curve": curve(5.1, 5.8), "data": {"tokens": 3042, "answer_tokens": 828, "examples": 48},
                "summary": {"steps": 5}},
        "dpo": {"loss_curve": curve(0.693, 0.68), "loss_type": "sigmoid", "data": {"examples": 20},
                "summary": {"steps": 4}},
        "eval": eval_metrics,
    }


def fake_run(root: Path, name: str, manifests: dict[str, dict[str, Any]],
             models: dict[str, str] | None = None) -> Path:
    store = RunStore(root)
    with store.locked():
        store.save_run_config({"name": name, "target_language": "eu", "models": models or {"base": "builtin:x"}},
                              list(manifests))
        for stage, metrics in manifests.items():
            store.commit(stage, store.begin(stage), {"stage": stage, "metrics": metrics, "wall_seconds": 1.5,
                                                     "config_hash": "h", "versions": {"torch": "2"}})
    return root


@pytest.fixture
def page(tmp_path: Path) -> str:
    return render_report(
        load_run(fake_run(tmp_path / "a", "variant-a", stage_manifests(constructed_metrics(tmp_path))))
    )


def section_of(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    return page[start:page.index("</section>", start)]


def test_report_shows_every_section(page: str) -> None:
    assert re.findall(r"<h2>(.*?)</h2>", page) == list(SECTIONS)
    assert page.count("<svg") == 4  # chars/token bars, cross-entropy curves, DPO loss curve, bits/char bars


def test_every_eval_source_with_its_interval_change_and_regression_flag(page: str) -> None:
    evaluation = section_of(page, "Evaluation")
    for source, language in (("dev", "eu"), ("ood", "eu"), ("english", "en")):
        assert f"{source} bpc <small>({language})</small>" in evaluation
    assert ('<tr class="regression"><td>cpt</td><td>5.1</td><td>[5.1, 5.1]</td><td>+1.5</td><td>[+1.5, +1.5]</td>'
            "<td>REGRESSION</td></tr>") in evaluation
    assert '<tr class="better"><td>cpt</td><td>2.1</td><td>[2.1, 2.1]</td><td>−1</td><td>[−1, −1]</td>' in evaluation
    assert (
        "<td>cpt</td><td>1.51</td><td>[1.5, 1.53]</td><td>+0.01</td><td>[0, +0.03]</td><td>no clear change</td>"
        in evaluation
    )
    assert (
        "<td>sft</td><td>1</td><td>[0.51, 1]</td><td>+0.75</td><td>[+0.25, +1]</td><td>too few items (&lt; 10) to tell"
        in evaluation
    )
    assert "<td>base</td><td>0.25</td><td>[0.0456, 0.699]</td>" in evaluation  # Wilson 1/4
    assert evaluation.count('class="regression"') == 2  # cpt and sft on the out-of-domain source


def test_what_each_stage_bought_and_the_samples(page: str) -> None:
    bought = section_of(page, "What each stage bought")
    assert "<th>cpt (vs base)</th><th>sft (vs cpt)</th>" in bought
    assert ('<td>ood bpc</td><td><span class="regression">+1.5</span><br><small>[+1.5, +1.5]</small></td>'
            "<td>0<br><small>[0, 0]</small></td>") in bought
    assert (
        "<td>mc:t loglik</td><td>+0.25<br><small>[0, +0.75]</small></td><td>+0.5<br><small>[0, +1]</small></td>"
        in bought
    )
    samples = section_of(page, "Sample generations")
    assert "<th>original (base)</th><th>final (sft)</th>" in samples
    assert ('<td><div class="gen">Egun on</div></td><td><div class="gen">ez dakit</div></td>'
            '<td><div class="gen">Egun on</div></td>') in samples


def test_warnings_stages_training_and_lep(page: str) -> None:
    warnings = section_of(page, "Warnings")
    assert "<li>lep: models.instruct is models.base" in warnings
    assert "<li>eval: regression: cpt ood bpc 5.1 (+1.5 vs base, 95 % interval +1.5 to +1.5)</li>" in warnings
    stages = section_of(page, "Stages")
    assert "<td>cpt</td><td></td><td>1.5 s</td><td>12,288</td><td>—</td><td>final loss = 8</td>" in stages
    assert "<td>sft</td><td></td><td>1.5 s</td><td>3,042</td><td>48</td>" in stages
    assert "<td>dpo</td><td></td><td>1.5 s</td><td>—</td><td>20</td>" in stages
    assert "Total wall time 13.5 s" in stages
    training = section_of(page, "Training")
    assert re.findall(r"<h3>(.*?)</h3>", training) == ["cross-entropy (nats/token)", "DPO loss (sigmoid)"]
    lep = section_of(page, "Learned Embedding Propagation")
    assert '<p class="warning">⚠ models.instruct is models.base (embed_tokens: distance from identity' in lep
    assert "<td>embed_tokens</td><td>62,033</td><td>6.5e-16</td><td>9.8e-16</td>" in lep


def test_a_fitted_map_at_the_identity_is_warned_about_without_same_model(tmp_path: Path) -> None:
    manifests = stage_manifests({})
    manifests["lep"] = {"method": "overlap", "maps": {"lm_head": {"fit_rows": 5, "residual": 0.1,
                                                                  "identity_deviation": 2e-9}}}
    page = render_report(load_run(fake_run(tmp_path / "a", "x", manifests)))
    assert "<li>lep: the fitted map is the identity (lm_head: distance from identity" in section_of(page, "Warnings")
    manifests["lep"]["method"] = "swap"  # swap's map is the identity by definition
    assert "<h2>Warnings</h2>" not in render_report(load_run(fake_run(tmp_path / "b", "x", manifests)))


def test_a_constructed_instruct_sibling_is_labelled_as_constructed(tmp_path: Path) -> None:
    models = {"base": "builtin:smollm2-135m-instruct", "instruct": "builtin:smollm2-135m-child-brackets"}
    run = section_of(render_report(load_run(fake_run(tmp_path / "a", "x", {"data": {}}, models))), "Run")
    assert ("builtin:smollm2-135m-child-brackets — CONSTRUCTED from builtin:smollm2-135m-instruct: answers inside "
            "&lt;&lt; … &gt;&gt;") in run
    assert "<td>builtin:smollm2-135m-instruct</td>" in run  # a shipped builtin is not labelled


def test_an_eval_manifest_without_figures_still_shows_values_and_changes(tmp_path: Path) -> None:
    models = {"base": {"eu bpc": 4.0, "en bpc": 1.5}, "cpt": {"eu bpc": 2.5, "en bpc": 1.75}}
    page = render_report(load_run(fake_run(tmp_path / "a", "old", {"eval": {"models": models}})))
    assert "<td>cpt</td><td>2.5</td><td></td><td>−1.5</td><td></td><td></td>" in page
    assert "<td>cpt</td><td>1.75</td><td></td><td>+0.25</td><td></td><td></td>" in page


def test_names_from_configs_and_models_are_escaped(tmp_path: Path) -> None:
    metrics = constructed_metrics(tmp_path)
    metrics["samples"]["copy:c"]["items"][0]["final"] = "<script>alert(2)</script>"
    metrics["models"]["<script>alert(1)</script>"] = {"dev bpc": 1.0}
    page = render_report(load_run(fake_run(tmp_path / "a", "x", {"eval": metrics})))
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_other_runs_are_compared_side_by_side(tmp_path: Path) -> None:
    a = load_run(fake_run(tmp_path / "a", "extended", {"eval": {"models": {"cpt": {"eu bpc": 2.5}}}}))
    b = load_run(fake_run(tmp_path / "b", "optimized", {"eval": {"models": {"cpt": {"eu bpc": 2.4}}}}))
    page = render_report(a, [b])
    section = page[page.index("<h2>Runs compared</h2>"):]
    assert re.search(
        r"<td>extended</td><td>cpt</td><td>2\.5</td>.*<td>optimized</td><td>cpt</td><td>2\.4</td>", section
    )


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
        {
            "name": "r",
            "output_dir": str(tmp_path / "run"),
            "target_language": "eu",
            "models": {"base": "builtin:smollm2-135m-instruct"},
            "data": {"sources": {"eu": {"path": str(corpus)}}},
            "report": {"title": "Basque <demo>"},
        },
        base_dir=tmp_path,
    )
    pipeline.run_pipeline(cfg)
    page = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "<title>Basque &lt;demo&gt;</title>" in page and "<td>data</td>" in page
    assert RunStore(tmp_path / "run").manifest("report")["metrics"]["stages"] == ["data"]


def test_the_data_section_says_which_token_counts_are_estimates(tmp_path: Path) -> None:
    manifests = stage_manifests(constructed_metrics(tmp_path))
    manifests["data"]["sources"]["basque"] |= {"tokens": 35_000, "tokens_estimated_from": 625}
    data = section_of(render_report(load_run(fake_run(tmp_path / "s", "sampled", manifests))), "Data")
    assert "tokens_estimated_from" in data and "625" in data
    exact = section_of(render_report(load_run(fake_run(tmp_path / "e", "exact", stage_manifests(
        constructed_metrics(tmp_path))))), "Data")
    assert "tokens_estimated_from" not in exact
