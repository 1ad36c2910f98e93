"""The eval stage's manifest metrics from constructed reports: every source, intervals, regressions, summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from langadapt.evaluate.intervals import wilson
from tests.evaluate.constructed import constructed_metrics


def test_every_source_gets_a_figure_and_the_out_of_domain_regression_is_flagged(tmp_path: Path) -> None:
    metrics = constructed_metrics(tmp_path)
    assert metrics["sources"] == {"dev": "eu", "ood": "eu", "english": "en"}
    assert metrics["reference"] == "base" and metrics["chain"] == ["base", "cpt", "sft"]
    ood = metrics["figures"]["cpt"]["ood bpc"]
    assert ood == pytest.approx({"value": 5.1, "low": 5.1, "high": 5.1, "n": 10, "lower_is_better": True,
                                 "delta": 1.5, "delta_low": 1.5, "delta_high": 1.5, "verdict": "worse"})
    dev = metrics["figures"]["cpt"]["dev bpc"]
    assert (dev["delta"], dev["delta_low"], dev["delta_high"], dev["verdict"]) == pytest.approx(
        (-1.0, -1.0, -1.0, "better")
    )
    # One document of ten is 1 bit (0.01 bits/char of the source) worse; a resample holds it k ~ Binomial(10, 0.1)
    # times: k = 0 has probability 35 % (the low end, 0), k >= 3 has 7 % and k >= 4 1.3 % (the high end, 0.03).
    english = metrics["figures"]["cpt"]["english bpc"]
    assert (english["delta"], english["delta_low"], english["delta_high"], english["verdict"]) == pytest.approx(
        (0.01, 0.0, 0.03, "same"))
    assert metrics["figures"]["base"]["mc:t loglik"] == pytest.approx(
        {"value": 0.25, "low": wilson(1, 4)[0], "high": wilson(1, 4)[1], "n": 4, "lower_is_better": False}, abs=1e-6)
    assert "verdict" not in metrics["figures"]["sft"]["mc:t loglik"]  # 4 items: an interval, too few for a verdict
    assert [(r["model"], r["metric"]) for r in metrics["regressions"]] == [("cpt", "ood bpc"), ("sft", "ood bpc")]
    assert metrics["warnings"][0] == "regression: cpt ood bpc 5.1 (+1.5 vs base, 95 % interval +1.5 to +1.5)"


def test_what_each_stage_bought(tmp_path: Path) -> None:
    steps = constructed_metrics(tmp_path)["steps"]
    assert [(s["stage"], s["from"]) for s in steps] == [("cpt", "base"), ("sft", "cpt")]
    assert steps[0]["changes"]["ood bpc"]["verdict"] == "worse"
    assert steps[1]["changes"]["ood bpc"] == {"delta": 0.0, "delta_low": 0.0, "delta_high": 0.0, "verdict": "same"}
    # sft makes items 3 and 4 correct: differences [0, 0, 1, 1], whose resampled mean is 0 with probability 1/16;
    # four items are too few for a verdict
    assert steps[1]["changes"]["mc:t loglik"] == {"delta": 0.5, "delta_low": 0.0, "delta_high": 1.0}
    assert steps[0]["changes"]["dev tok/word"] == {"delta": 0.0}  # no per-item data: value change only


def test_summary_shows_start_and_end_on_target_and_english_sources_and_the_regression_count(tmp_path: Path) -> None:
    summary = constructed_metrics(tmp_path)["summary"]
    assert summary == {
        "base dev bpc": 3.1, "base ood bpc": 3.6, "base english bpc": 1.5, "base mc:t loglik": 0.25,
        "sft dev bpc": 2.1, "sft ood bpc": 5.1, "sft english bpc": 1.51, "sft mc:t loglik": 1.0,
        "regressions": 2,
    }


def test_samples_pair_the_original_and_the_final_outputs(tmp_path: Path) -> None:
    samples = constructed_metrics(tmp_path)["samples"]
    assert samples == {"copy:c": {"original": "base", "final": "sft", "items": [
        {"prompt": "Kaixo mundua", "original": "Kaixo mundua", "final": "Kaixo mundua"},
        {"prompt": "Egun on", "original": "ez dakit", "final": "Egun on"}]}}
