"""The `embed` stage with corpus-based methods and `auto`, its preflight, and the `embed init/probe` verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from tests.embeddings.helpers import extend_with_words
from tests.tiny import EU_DEV, EU_TRAIN

FAST = {"distill": {"steps": 4, "batch_size": 4, "english_batch_size": 2, "length": 24}, "convex": {"epochs": 2}}


def config(tmp_path: Path, base: Path, english: bool = True, **embed: Any) -> dict[str, Any]:
    sources = {"basque": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu", "max_documents": 600}}
    if english:
        sources["english"] = {"path": str(EU_TRAIN), "text_field": "en", "language": "en", "max_documents": 600}
    return {
        "name": "init", "output_dir": str(tmp_path / "run"), "target_language": "eu", "models": {"base": str(base)},
        "data": {"sources": sources,
                 "eval_sources": {"basque_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"}}},
        "vocab": {"method": "extended", "vocab_size": 800},
        "embed": embed,
    }


def test_auto_probes_on_held_out_training_documents_and_records_the_table(
    tmp_path: Path, tiny_llama_tied: Path
) -> None:
    cfg = validate_config(config(tmp_path, tiny_llama_tied, method="auto", options=FAST,
                                 auto={"methods": ["mean", "convex", "distill"], "documents": 6, "english_limit": 0.5},
                                 calibration={"english_documents": 8}), base_dir=tmp_path)
    run_pipeline(cfg)
    metrics = RunStore(tmp_path / "run").manifest("embed")["metrics"]
    probe = metrics["probe"]
    assert [m["method"] for m in probe["methods"]] == ["mean", "convex", "distill"]
    assert probe["documents"] == {"target": 6, "english": 6}
    eligible = [m for m in probe["methods"] if m["english_regression"] <= 0.5]
    assert metrics["method"] == probe["chosen"] == min(eligible, key=lambda m: m["target_bpc"])["method"]
    assert all("calibration" in m and m["fallback_rows"] >= 0 for m in probe["methods"])
    assert metrics["summary"]["method"] == probe["chosen"]


def test_validate_names_the_method_option_or_missing_corpus(tmp_path: Path, tiny_llama: Path) -> None:
    def checked(**embed: Any) -> None:
        check(validate_config(config(tmp_path, tiny_llama, **embed), base_dir=tmp_path))

    with pytest.raises(LangadaptError, match=r"embed\.method 'distil' is not an init method — did you mean 'distill'"):
        checked(method="distil")
    with pytest.raises(LangadaptError, match=r"embed\.method 'covex' is not an init method — did you mean 'convex'"):
        checked(method="auto", auto={"methods": ["mean", "covex"]})
    with pytest.raises(
        LangadaptError, match=r"embed\.options\.distill: 'steps': input should be greater than or equal to 1"
    ):
        checked(method="distill", options={"distill": {"steps": 0}})
    with pytest.raises(LangadaptError, match=r"embed\.options 'mea' is not an init method — did you mean 'mean'"):
        checked(method="mean", options={"mea": {}})
    cfg = config(tmp_path, tiny_llama, method="convex")
    cfg["data"]["sources"]["basque"]["language"] = None
    with pytest.raises(LangadaptError, match="no data source has language"):
        check(validate_config(cfg, base_dir=tmp_path))
    cfg = config(tmp_path, tiny_llama, method="mean", calibration={"shared_offset": True})
    cfg["data"]["sources"]["basque"]["language"] = None
    cfg["vocab"]["sources"] = ["basque"]  # the vocab stage is told what to train on: embed's own check speaks
    with pytest.raises(LangadaptError, match=r"embed\.calibration\.shared_offset reads the target corpus"):
        check(validate_config(cfg, base_dir=tmp_path))
    cfg["embed"]["calibration"] = {"shared_direction": True}
    with pytest.raises(LangadaptError, match=r"embed\.calibration\.shared_direction reads the target corpus"):
        check(validate_config(cfg, base_dir=tmp_path))
    cfg["embed"]["calibration"] = {"shared_offset": False}
    check(validate_config(cfg, base_dir=tmp_path))  # the mean alone reads no corpus


def langadapt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langadapt.cli", *args], capture_output=True, text=True, timeout=300)


def test_embed_verbs_take_methods_from_the_registry(tmp_path: Path, tiny_llama: Path) -> None:
    tokenizer, _ = extend_with_words(tiny_llama, ["Kaixoñ", "mundua", "euskara"], tmp_path / "tok")
    from langadapt.embeddings.registry import registered_methods

    listed = langadapt("embed", "methods")
    assert listed.returncode == 0, listed.stderr
    names = [line.split(":")[0] for line in listed.stdout.splitlines()]
    assert names == [*sorted(registered_methods()), "auto"]
    bad = langadapt("embed", "init", "--model", str(tiny_llama), "--tokenizer", str(tokenizer), "--out",
                    str(tmp_path / "m"), "--method", "distil")
    assert bad.returncode != 0 and "did you mean 'distill'? choose one of: convex, distill, mean" in bad.stderr
    assert not (tmp_path / "m").exists()
    probe = langadapt("embed", "probe", "--model", str(tiny_llama), "--tokenizer", str(tokenizer),
                      "--corpus", str(EU_TRAIN), "--text-field", "eu", "--english", str(EU_TRAIN),
                      "--english-field", "en", "--methods", "mean,random", "--documents", "4")
    assert probe.returncode == 0, probe.stderr
    table = json.loads(probe.stdout)
    assert table["chosen"] in {"mean", "random"} and len(table["methods"]) == 2


def test_the_report_shows_the_probe_table(tmp_path: Path) -> None:
    from langadapt.report.html import load_run, render_report

    store = RunStore(tmp_path / "run")
    probe = {"original": {"target_bpc": 4.0, "english_bpc": 1.5}, "chosen": "distill", "english_limit": 0.01,
             "limit_met": True, "methods": [
                 {"method": "mean", "target_bpc": 2.4, "english_bpc": 1.56, "english_regression": 0.04,
                  "fallback_rows": 3},
                 {"method": "distill", "target_bpc": 2.2, "english_bpc": 1.505, "english_regression": 0.0033,
                  "fallback_rows": 0, "init_seconds": 90.0}]}
    with store.locked():
        store.save_run_config({"name": "r", "target_language": "eu", "models": {"base": "builtin:x"}}, ["embed"])
        store.commit("embed", store.begin("embed"), {"stage": "embed", "wall_seconds": 1.0, "config_hash": "h",
                                                     "versions": {}, "metrics": {"method": "distill", "new_rows": 9,
                                                                                 "fallback_rows": 0, "probe": probe}})
    page = render_report(load_run(tmp_path / "run"))
    assert "<h2>Embedding initialisation</h2>" in page
    assert "<td>distill</td><td>2.2</td><td>1.505</td><td>0.0033</td><td>0</td><td>90</td>" in page
    assert "chosen: <b>distill</b>" in page


def test_embed_verbs_take_a_calibration_section_as_json() -> None:
    from langadapt.embeddings.cli import _calibration

    assert _calibration(None, False) is None and _calibration(None, True).offset is True
    chosen = _calibration('{"offset": false, "shared_offset": true, "target_documents": 128}', False)
    assert (chosen.offset, chosen.shared_offset, chosen.target_documents) == (False, True, 128)
    with pytest.raises(LangadaptError, match=r"--calibration is not JSON .* e\.g\. '\{\"shared_offset\": true\}'"):
        _calibration("{shared_offset: true}", False)
    with pytest.raises(LangadaptError, match=r"--calibration: 'target_documents': input should be greater than or "
                       r"equal"):
        _calibration('{"target_documents": 0}', False)
