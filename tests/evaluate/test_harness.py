"""The lm-eval bridge: our MC tasks run as lm-eval tasks give lm-eval's own predictions = ours."""

from __future__ import annotations

import sys

import pytest

from langadapt.errors import LangadaptError
from langadapt.evaluate.harness import export_mc_task, run_lm_eval
from langadapt.evaluate.mc import McFormat, evaluate_mc
from tests.evaluate.test_mc import _items


def test_exported_task_matches_our_scorer(llama, basque_dev_texts, tmp_path) -> None:
    model, tokenizer = llama
    items = _items(basque_dev_texts, 8, seed=5)
    fmt = McFormat(language="eu", answer_format="text")
    ours = evaluate_mc(model, tokenizer, items, fmt=fmt)
    export_mc_task(items, tmp_path, "eu_tiny", fmt=fmt)
    results = run_lm_eval(model, tokenizer, ["eu_tiny"], include_path=tmp_path, batch_size=4, log_samples=True)
    assert results["eu_tiny"]["acc"] == pytest.approx(ours.accuracy["loglik"])
    assert results["eu_tiny"]["acc_norm"] == pytest.approx(ours.accuracy["loglik_norm"])
    samples = sorted(results["samples"]["eu_tiny"], key=lambda s: s["doc_id"])
    for sample, record in zip(samples, ours.items, strict=True):
        assert [ll for ll, _ in sample["filtered_resps"]] == pytest.approx(record["loglik"]["scores"], abs=2e-4)
    with pytest.raises(LangadaptError, match=r"lm-eval knows no task\(s\) no_such_task"):
        run_lm_eval(model, tokenizer, ["no_such_task"], include_path=tmp_path)


def test_missing_lm_eval_says_how_to_install(llama, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.raises(LangadaptError, match=r"pip install langadapt\[eval\]"):
        run_lm_eval(*llama, ["x"])
