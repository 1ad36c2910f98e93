"""The eval stage inside a run: per-model JSON, comparison table, manifest metrics; the compare verb."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.config import validate_config
from langadapt.data.corpus import eval_file, read_texts
from langadapt.errors import LangadaptError
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
    assert report["headline"]["eu bpc"] == round(expected, 4)
    assert set(report["headline"]) >= {"eu bpc", "en bpc", "eu tok/word", "mc:translation loglik",
                                       "mc:translation loglik_norm", "copy:sentences len", "gen words/s"}
    assert report["mc"]["translation"]["n"] == 3
    assert all(len(item["reference"]) <= 60 for item in report["copy"]["sentences"]["items"])

    metrics = RunStore(tmp_path / "run").manifest("eval")["metrics"]
    assert metrics["skipped"] == ["cpt"]
    assert metrics["models"]["base"] == report["headline"]
    assert metrics["summary"]["base eu bpc"] == report["headline"]["eu bpc"]
    assert "qwen2 en bpc" in metrics["summary"]
    table = (out / "comparison.md").read_text().splitlines()
    assert table[0].startswith("| model | eu bpc |") and table[2].startswith("| base |")

    result = CliRunner().invoke(app, ["eval", "compare", str(out / "base.json"), str(out / "qwen2.json"), "--csv"])
    assert result.exit_code == 0, result.output
    assert result.output == (out / "comparison.csv").read_text()


def test_preflight_names_the_bad_key(tmp_path: Path, tiny_llama: Path) -> None:
    bad_copy = {"copy": {"c": {"kind": "sentence", "source": "nope"}}}
    cfg = validate_config(_config(tmp_path, tiny_llama, **bad_copy), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=r"eval.copy.c.source 'nope' is not in data.eval_sources"):
        check(cfg)
    task = tmp_path / "bad.jsonl"
    task.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a"], "answer": 3}\n')
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
