"""The command line as a user meets it: help everywhere, one-line errors, nothing written on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from langadapt.cli import registered_verbs
from tests.tiny import EU_DEV, REPO


def langadapt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "langadapt.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for needle in needles:
        assert needle in lines[0]


def config_text(output_dir: str, source: str, **models: str) -> str:
    models_yaml = ", ".join(f"{k}: {v}" for k, v in ({"base": "builtin:smollm2-135m-instruct"} | models).items())
    return (
        f"name: t\noutput_dir: {output_dir}\ntarget_language: eu\nmodels: {{{models_yaml}}}\n"
        f"data:\n  sources:\n    eu: {{path: {source}, text_field: eu}}\n"
    )


def test_every_verb_has_help() -> None:
    stage_verbs = {"data", "vocab", "embed", "lep", "translate", "cpt", "sft", "dpo", "check", "eval", "report"}
    assert {"validate", "run", "status", "demo", "models", *stage_verbs} <= registered_verbs()
    for verb in ("validate", "run", "status", "demo", "models", "vocab", "eval"):
        result = langadapt(verb, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, (verb, result.stderr)


def test_validate_accepts_the_demo_config() -> None:
    result = langadapt("validate", str(REPO / "examples" / "demo-eu.yaml"))
    assert result.returncode == 0 and "stages: data" in result.stdout


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("unknown_key", ["unknown key 'data.sources.eu.text_feld'", "did you mean 'text_field'?"]),
        ("wrong_type", ["'seed' expects an integer"]),
        ("missing_file", ["no file matches", "data.sources.eu.path"]),
        ("output_dir_is_file", ["is a file", "point output_dir at a folder"]),
        ("unknown_model", ["resolves to nothing"]),
        ("remote_code", ["trust_remote_code: true"]),
        ("missing_text_field", ["no field 'body'", "fields: en, eu, id"]),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path: Path, case: str, needles: list[str]) -> None:
    source = str(EU_DEV)
    out = "out"
    text = config_text(out, source)
    if case == "unknown_key":
        text = text.replace("text_field", "text_feld")
    elif case == "wrong_type":
        text += "seed: abc\n"
    elif case == "missing_file":
        text = config_text(out, "nope/*.jsonl")
    elif case == "output_dir_is_file":
        (tmp_path / "taken").write_text("")
        text = config_text("taken", source)
    elif case == "unknown_model":
        text = config_text(out, source, base="no-such-model")
    elif case == "remote_code":
        (tmp_path / "custom").mkdir()
        (tmp_path / "custom" / "config.json").write_text('{"auto_map": {"AutoModel": "x.Y"}}')
        (tmp_path / "custom" / "model.safetensors").write_bytes(b"")
        text = config_text(out, source, base="custom")
    elif case == "missing_text_field":
        text = text.replace("text_field: eu", "text_field: body")
    (tmp_path / "run.yaml").write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    for verb in ("validate", "run"):
        assert_one_line_error(langadapt(verb, "run.yaml", cwd=tmp_path), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_status_of_something_that_is_not_a_run(tmp_path: Path) -> None:
    assert_one_line_error(langadapt("status", str(tmp_path / "nope")), "not a run folder")
    assert_one_line_error(langadapt("status", str(tmp_path)), "holds no langadapt run")


@pytest.mark.smollm2
def test_run_then_status_shows_real_corpus_figures(tmp_path: Path, smollm2_dir: Path) -> None:
    (tmp_path / "run.yaml").write_text(config_text("out", str(EU_DEV)))
    result = langadapt("run", "run.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    status = langadapt("status", "out", "--json", cwd=tmp_path)
    rows = json.loads(status.stdout)
    assert rows[0]["stage"] == "data" and rows[0]["status"] == "complete"
    metrics = rows[0]["metrics"]
    assert metrics["documents"] + metrics["removed"] == 1022 and metrics["documents"] > 600  # cleaned + deduplicated
    assert 3.3 < rows[0]["metrics"]["eu tok/word"] < 3.7
    rerun = langadapt("run", "run.yaml", cwd=tmp_path)
    assert "up to date" in rerun.stdout
