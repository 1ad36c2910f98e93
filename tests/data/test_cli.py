"""`langadapt data stats` on a config (measures) and on a run folder (reads the manifests)."""

from __future__ import annotations

import json
from pathlib import Path

from langadapt.config import load_config
from langadapt.pipeline import run_pipeline
from tests.test_cli import assert_one_line_error, langadapt
from tests.tiny import EU_DEV


def write_config(tmp_path: Path, base: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"name: s\noutput_dir: out\ntarget_language: eu\nmodels: {{base: {base}}}\n"
        f"data:\n  sources:\n    eu: {{path: {EU_DEV}, text_field: eu, language: eu, max_documents: 300}}\n"
        f"    en: {{path: {EU_DEV}, text_field: en, language: en, max_documents: 100}}\n"
        f"pack: {{context_length: 64, mix: {{eu: 0.8, en: 0.2}}, cache_dir: cache}}\n"
    )
    return path


def test_stats_on_a_config_prints_and_writes_json(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    config = write_config(tmp_path, byte_level_tokenizer)
    result = langadapt("data", "stats", str(config), "--out", str(tmp_path / "stats.json"))
    assert result.returncode == 0, result.stderr
    assert "removed: exact_duplicate" in result.stdout and "detected: eu" in result.stdout
    assert "throughput: " in result.stdout and "process/language" in result.stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    eu = stats["sources"]["eu"]
    assert eu["documents"] == 300 and eu["read"] == 300 + sum(eu["removed"].values())
    assert eu["tokens"] > eu["words"] > 0 and set(eu["languages"]) <= {"eu", "en"}
    assert stats["throughput"]["steps"]["process/read"]["docs_per_s"] > 0
    assert stats["tokenizer"] == str(byte_level_tokenizer)
    assert not (tmp_path / "out").exists()  # measuring writes no corpus


def test_stats_on_a_run_folder_shows_the_mix(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    run_pipeline(load_config(write_config(tmp_path, byte_level_tokenizer)))
    result = langadapt("data", "stats", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["sources"]["en"]["documents"] == 100
    assert stats["pack"]["mix"]["requested_token_share"] == {"eu": 0.8, "en": 0.2}
    table = langadapt("data", "stats", str(tmp_path / "out"))
    assert "pack: " in table.stdout and "eu: 0.8000 of tokens (requested 0.8000)" in table.stdout


def test_stats_errors(tmp_path: Path) -> None:
    assert_one_line_error(langadapt("data", "stats", str(tmp_path)), "has no complete data stage")
    assert_one_line_error(langadapt("data", "stats", str(tmp_path / "nope.yaml")), "does not exist")


def test_stats_say_which_token_counts_are_estimates(tmp_path: Path, byte_level_tokenizer: Path) -> None:
    config = write_config(tmp_path, byte_level_tokenizer)
    config.write_text(config.read_text().replace("data:\n", "data:\n  token_count_every: 4\n"))
    result = langadapt("data", "stats", str(config), "--out", str(tmp_path / "stats.json"))
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())["sources"]
    assert (stats["eu"]["tokens_estimated_from"], stats["en"]["tokens_estimated_from"]) == (75, 25)  # ⌈300/4⌉, ⌈100/4⌉
    row = next(line for line in result.stdout.splitlines() if "tokens from (documents)" in line)
    assert "75" in row and "25" in row
