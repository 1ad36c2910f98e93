"""`langadapt cpt`: settings from a config + --set, bad input as one line, output through a temp folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.errors import LangadaptError
from langadapt.train.cli import section_from
from langadapt.train.config import CptConfig


def invoke(*args: str):
    return CliRunner().invoke(app, ["cpt", *args])


def test_settings_come_from_the_cpt_section_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "seed: 9\nmodels: {base: x, trust_remote_code: true}\n"
        "cpt: {mode: lora, learning_rate: 2.0e-4, lora: {r: 8}, launch: {config_file: ds.yaml}}\n"
    )
    settings, run = section_from(config, "cpt", CptConfig, ["max_steps=50", "lora.alpha=1", "schedule=wsd"])
    assert (settings.mode, settings.learning_rate, settings.max_steps, settings.schedule) == ("lora", 2e-4, 50, "wsd")
    assert (settings.lora.r, settings.lora.alpha) == (8, 1.0)
    assert settings.launch.config_file == tmp_path / "ds.yaml"  # relative to the config file
    assert run.seed == 9 and run.trust_remote_code is True
    defaults, run = section_from(None, "cpt", CptConfig, [])
    assert defaults.mode == "embeddings" and run.seed == 42 and run.trust_remote_code is False


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["max_steps"], "--set 'max_steps' is not KEY=VALUE"),
        (["mode=everything"], "'mode': input should be 'full', 'embeddings' or 'lora'"),
        (["learning_rat=1"], "unknown key 'learning_rat' — did you mean 'learning_rate'?"),
        (["save_total_limit=1"], "'save_total_limit'"),
        (["mode=full", "lora.r=4"], "a lora section is set but mode is 'full'"),
    ],
)
def test_bad_settings_are_one_line(overrides: list[str], needle: str) -> None:
    with pytest.raises(LangadaptError) as info:
        section_from(None, "cpt", CptConfig, overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("cpt: {max_steps: 2\n", "invalid YAML at line"),
        ("cpt: {max_steps: 2}\ncpt: {max_steps: 3}\n", "duplicate key 'cpt'"),
    ],
)
def test_a_broken_config_file_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(LangadaptError) as info:
        section_from(config, "cpt", CptConfig, [])
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_input_writes_nothing(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    out = tmp_path / "out"
    result = invoke("--model", str(tiny_llama), "--data", str(tmp_path / "nope"), "--out", str(out))
    assert isinstance(result.exception, LangadaptError) and "does not exist" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    out.mkdir()
    (out / "earlier.txt").write_text("keep me")
    result = invoke("--model", str(tiny_llama), "--data", str(packed_eu), "--out", str(out))
    assert "already exists" in str(result.exception)


def test_verb_trains_and_renames_its_output_into_place(tmp_path: Path, tiny_llama: Path, packed_eu: Path) -> None:
    out = tmp_path / "cpt"
    result = invoke("--model", str(tiny_llama), "--data", str(packed_eu), "--out", str(out), "--set", "max_steps=2",
                    "--set", "warmup_steps=0", "--set", "report_to=[none]")
    assert result.exit_code == 0, result.output
    assert "cpt done:" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cpt"]  # no temp folder, no checkpoints left
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["mode"] == "embeddings"
    assert (out / "model" / "model.safetensors").exists()
