"""The config schema: strict keys with suggestions, typed values, paths relative to the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from langadapt.config import load_config
from langadapt.errors import ConfigError
from tests.tiny import REPO

DEMO = REPO / "examples" / "demo-eu.yaml"

MINIMAL = """\
name: t
output_dir: out
target_language: eu
models: {base: builtin:smollm2-135m-instruct}
data:
  sources:
    eu: {path: corpus.jsonl, text_field: eu}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_demo_config_loads_with_paths_resolved_against_its_folder() -> None:
    cfg = load_config(DEMO)
    assert cfg.name == "demo-eu" and cfg.target_language == "eu"
    assert cfg.output_dir == (REPO / "runs" / "demo-eu").resolve()
    assert cfg.data.sources["basque"].path == str(REPO / "examples/data/eu/libreoffice-help.en-eu.train.jsonl.gz")
    assert cfg.models.base == "builtin:smollm2-135m-instruct"
    assert cfg.models.base_tokenizer == cfg.models.base


def test_relative_paths_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, MINIMAL)
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert cfg.output_dir == tmp_path / "out"
    assert cfg.data.sources["eu"].path == str(tmp_path / "corpus.jsonl")


def test_unknown_key_suggests_the_closest_known_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("text_field: eu", "text_feld: eu"))
    assert "unknown key 'data.sources.eu.text_feld' — did you mean 'text_field'?" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "modles: {}\n")
    assert "unknown key 'modles' — did you mean 'models'?" in message


def test_wrong_type_names_the_key_path_and_expected_type(tmp_path: Path) -> None:
    assert "'seed' expects an integer, got 'abc'" in error_of(tmp_path, MINIMAL + "seed: abc\n")
    message = error_of(tmp_path, MINIMAL.replace("models: {base: builtin:smollm2-135m-instruct}", "models: [1]"))
    assert "'models' expects a mapping" in message


def test_missing_key_and_bad_language_code(tmp_path: Path) -> None:
    assert "missing key 'target_language'" in error_of(tmp_path, MINIMAL.replace("target_language: eu\n", ""))
    assert "'target_language'" in error_of(tmp_path, MINIMAL.replace("target_language: eu", "target_language: Basque"))


def test_yaml_problems_are_one_line(tmp_path: Path) -> None:
    assert "duplicate key 'name' at line 2" in error_of(tmp_path, "name: a\nname: b\n")
    assert "invalid YAML at line 2" in error_of(tmp_path, "name: t\n  bad: [\n")
    assert "top level must be a mapping" in error_of(tmp_path, "- a\n- b\n")


def test_inline_tokens_are_refused(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL.replace("builtin:smollm2-135m-instruct", "hf_" + "a" * 30))
    assert "'models.base' holds what looks like an access token" in message
    assert "hf_aaaa" not in message  # the secret itself is never echoed


def test_missing_config_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)


def test_numbers_written_the_yaml_1_1_way_still_parse(tmp_path: Path) -> None:
    # PyYAML reads `1e-4` as a string; pydantic's lax mode turns it into the float users meant.
    from langadapt.data.config import SourceConfig

    assert SourceConfig.model_validate({"path": "x", "max_documents": "12"}).max_documents == 12
