"""The eval stage inside a run: per-model JSON, comparison table, manifest metrics; the compare verb."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.config import validate_config
from langadapt.data.corpus import eval_file, read_texts
from langadapt.errors import LangadaptError
from langadapt.evaluate.intervals import ItemScores, interval, wilson
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from tests.evaluate.conftest import reference_bits_per_char
from tests.tiny import EU_DEV, EU_TRAIN, REPO
from tests.tiny import texts as tiny_texts

MC_TASK = REPO / "examples" / "data" / "eu" / "tasks" / "translation-mc.dev.jsonl"


def _config(tmp_path: Path, base: Path, **eval_section) -> dict:
    return {
        "name": "e", "output_dir": str(tmp_path / "run"), "target_language": "eu",
        "models": {"base": str(base)},
        "data": {
            "sources": {"eu": {"path": str(EU_TRAIN), "text_field": "eu", "max_documents": 50}},
            "eval_sources": {
                "eu_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"},
                "en_dev": {"path": str(EU_DEV), "text_field": "en", "language": "en"},
            },
        },
        "eval": eval_section,
    }


def test_eval_stage_writes_reports_and_metrics(tmp_path: Path, tiny_llama: Path, tiny_qwen2: Path) -> None:
    section = {
        "models": ["base", "cpt", str(tiny_qwen2)],
        "bpc": {"max_texts": 12},
        "mc": {"translation": {"path": str(MC_TASK), "answer_format": "text", "max_items": 3,
                               "scoring": ["loglik", "loglik_norm"]}},
        "copy": {"sentences": {"kind": "sentence", "source": "eu_dev", "max_chars": 60, "max_items": 2,
                               "max_new_tokens": 8}},
    }
    cfg = validate_config(_config(tmp_path, tiny_llama, **section), base_dir=tmp_path)
    run_pipeline(cfg)
    out = tmp_path / "run" / "eval"
    assert sorted(p.name for p in out.iterdir()) == [
        "base.json", "comparison.csv", "comparison.md", "log.txt", "manifest.json", "qwen2.json"]

    report = json.loads((out / "base.json").read_text())
    texts = list(read_texts(eval_file(tmp_path / "run" / "data", "eu_dev")))[:12]
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    expected = reference_bits_per_char(model.eval(), AutoTokenizer.from_pretrained(tiny_llama), texts)
    assert report["bpc"]["eu_dev"]["bits_per_char"] == pytest.approx(expected, rel=1e-5)
    assert report["headline"]["eu_dev bpc"] == round(expected, 4)
    assert set(report["headline"]) >= {"eu_dev bpc", "en_dev bpc", "eu_dev tok/word", "en_dev tok/word",
                                       "mc:translation loglik", "mc:translation loglik_norm", "copy:sentences len",
                                       "gen words/s"}
    documents = report["bpc"]["eu_dev"]["per_document"]
    assert documents["characters"] == [len(t) for t in texts]
    assert sum(documents["nll_nats"]) == pytest.approx(report["bpc"]["eu_dev"]["nll_nats"], rel=1e-6)
    assert report["bpc"]["en_dev"]["language"] == "en"
    assert report["mc"]["translation"]["n"] == 3
    assert all(item["loglik"]["correct"] == (item["loglik"]["prediction"] == item["answer"])
               for item in report["mc"]["translation"]["items"])
    assert all(len(item["reference"]) <= 60 for item in report["copy"]["sentences"]["items"])

    metrics = RunStore(tmp_path / "run").manifest("eval")["metrics"]
    assert metrics["skipped"] == ["cpt"]
    assert metrics["models"]["base"] == report["headline"]
    assert metrics["sources"] == {"eu_dev": "eu", "en_dev": "en"} and metrics["reference"] == "base"
    # every figure with per-item data has its interval, recomputed here from the stored per-item data
    qwen = json.loads((out / "qwen2.json").read_text())
    for label, model_report in (("base", report), ("qwen2", qwen)):
        scored = model_report["bpc"]["en_dev"]
        scores = ItemScores.ratio(scored["per_document"]["nll_nats"], scored["per_document"]["characters"],
                                  scale=1 / math.log(2))
        figure = metrics["figures"][label]["en_dev bpc"]
        assert (figure["low"], figure["high"]) == pytest.approx(interval(scores), abs=1e-6)
        assert figure["low"] <= figure["value"] <= figure["high"]
    accuracy = metrics["figures"]["base"]["mc:translation loglik"]
    correct = sum(item["loglik"]["correct"] for item in report["mc"]["translation"]["items"])
    assert (accuracy["low"], accuracy["high"]) == pytest.approx(wilson(correct, 3), abs=1e-6)
    change = metrics["figures"]["qwen2"]["en_dev bpc"]
    assert change["delta"] == pytest.approx(qwen["headline"]["en_dev bpc"] - report["headline"]["en_dev bpc"], abs=1e-6)
    assert change["delta_low"] <= change["delta"] <= change["delta_high"]
    worse = [(m, f) for m, rows in metrics["figures"].items() for f, e in rows.items() if e.get("verdict") == "worse"]
    assert [(r["model"], r["metric"]) for r in metrics["regressions"]] == worse
    assert len(metrics["warnings"]) == len(worse)
    assert metrics["summary"]["base eu_dev bpc"] == report["headline"]["eu_dev bpc"]
    assert {"base en_dev bpc", "qwen2 eu_dev bpc", "qwen2 en_dev bpc"} <= set(metrics["summary"])
    assert metrics["chain"] == ["base"]  # qwen2 is an extra model, not a stage of this run
    samples = metrics["samples"]["copy:sentences"]
    assert (samples["original"], samples["final"]) == ("base", "qwen2")
    assert [s["final"] for s in samples["items"]] == [i["prediction"] for i in qwen["copy"]["sentences"]["items"]]
    table = (out / "comparison.md").read_text().splitlines()
    assert table[0].startswith("| model | eu_dev bpc |") and table[2].startswith("| base |")

    result = CliRunner().invoke(app, ["eval", "compare", str(out / "base.json"), str(out / "qwen2.json"), "--csv"])
    assert result.exit_code == 0, result.output
    assert result.output == (out / "comparison.csv").read_text()


def test_preflight_names_the_bad_key(tmp_path: Path, tiny_llama: Path) -> None:
    bad_copy = {"copy": {"c": {"kind": "sentence", "source": "nope"}}}
    cfg = validate_config(_config(tmp_path, tiny_llama, **bad_copy), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=r"eval.copy.c.source 'nope' is not in data.eval_sources"):
        check(cfg)
    unevaluated = {"models": ["base", str(tiny_llama)],
                   "copy": {"c": {"kind": "sentence", "source": "eu_dev", "models": ["dpo", tiny_llama.name]}}}
    cfg = validate_config(_config(tmp_path, tiny_llama, **unevaluated), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=r"eval.copy.c.models names 'dpo', which eval.models does not evaluate"):
        check(cfg)
    task = tmp_path / "bad.jsonl"
    task.write_text(
        '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a"], "answer": 3}\n'
    )
    cfg = validate_config(_config(tmp_path, tiny_llama, mc={"t": {"path": str(task)}}), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=r"bad\.jsonl line 2: choices must be at least two"):
        check(cfg)


def test_bpc_verb_reads_a_text_file(tmp_path: Path, tiny_llama: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "bpc", str(tiny_llama), str(EU_DEV), "--field", "eu", "--max-texts", "5"])
    assert result.exit_code == 0, result.output
    texts = tiny_texts("eu", path=EU_DEV, limit=5)
    expected = reference_bits_per_char(AutoModelForCausalLM.from_pretrained(tiny_llama).eval(),
                                       AutoTokenizer.from_pretrained(tiny_llama), texts)
    assert json.loads(result.output)["bits_per_char"] == pytest.approx(expected, abs=2e-6)


def test_the_base_is_evaluated_with_models_tokenizer(tmp_path: Path, tiny_llama: Path, tiny_qwen2: Path) -> None:
    from langadapt.evaluate.stages import model_specs
    from langadapt.pipeline import StageContext
    from langadapt.runstore import RunStore

    data = _config(tmp_path, tiny_llama, models=["base", "cpt", str(tiny_qwen2)])
    data["models"]["tokenizer"] = str(tiny_qwen2)
    cfg = validate_config(data, base_dir=tmp_path)
    ctx = StageContext("eval", cfg, tmp_path, tmp_path, {}, "k", RunStore(tmp_path))
    specs, skipped = model_specs(cfg, ctx)
    assert [(s.label, s.tokenizer) for s in specs] == [("base", str(tiny_qwen2)), ("qwen2", None)]
    assert skipped == ["cpt"]  # a stage this run does not have
