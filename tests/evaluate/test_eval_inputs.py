"""Bad eval sources stop the eval stage in one line before any model loads, and `validate` catches them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from langadapt.config import load_config, validate_config
from langadapt.errors import LangadaptError
from langadapt.evaluate.stages import _check_eval_languages
from langadapt.evaluate.tasks import eval_texts
from langadapt.pipeline import check
from tests.tiny import EU_DEV, REPO
from tests.tiny import texts as tiny_texts


def write_eval(data_dir: Path, name: str, texts: list[str]) -> None:
    path = data_dir / "eval" / f"{name}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)


def test_a_source_the_data_stage_did_not_write_names_the_source_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LangadaptError, match=r"^eval source 'ood': the data stage wrote no .*ood\.jsonl\.gz — add it "
                                             r"to data\.eval_sources and re-run the data stage"):
        eval_texts(tmp_path, "ood")


def test_an_empty_source_names_the_source_and_the_fix(tmp_path: Path) -> None:
    write_eval(tmp_path, "dev", [])
    with pytest.raises(LangadaptError, match=r"^eval source 'dev' is empty .* check data\.eval_sources\.dev\.path"):
        eval_texts(tmp_path, "dev")


def test_a_source_in_another_language_than_declared_is_an_error(tmp_path: Path) -> None:
    english = tiny_texts("en", path=EU_DEV, limit=60)
    write_eval(tmp_path, "dev", english)
    with pytest.raises(LangadaptError, match=r"^eval source 'dev' is declared 'eu' but reads as 'en' \(\d+ of \d+ "
                                             r"texts sampled\) — fix data\.eval_sources\.dev\.language"):
        eval_texts(tmp_path, "dev", language="eu")
    assert eval_texts(tmp_path, "dev", 3, language="en") == english[:3]
    assert eval_texts(tmp_path, "dev", 3, language="eng") == english[:3]  # ISO 639-3 works too


def test_validate_reads_each_eval_sources_language(tmp_path: Path, tiny_llama: Path) -> None:
    data = {
        "name": "v", "output_dir": str(tmp_path / "run"), "target_language": "eu", "models": {"base": str(tiny_llama)},
        "data": {"sources": {"eu": {"path": str(EU_DEV), "text_field": "eu"}},
                 "eval_sources": {"dev": {"path": str(EU_DEV), "text_field": "en", "language": "eu"}}},
        "eval": {},
    }
    with pytest.raises(LangadaptError, match=r"eval source 'dev' is declared 'eu' but reads as 'en'"):
        check(validate_config(data, base_dir=tmp_path))


def test_the_demo_eval_sources_read_as_declared() -> None:
    cfg = load_config(REPO / "examples" / "demo-eu.yaml")
    assert cfg.data.eval_sources and all(s.language for s in cfg.data.eval_sources.values())
    _check_eval_languages(cfg)  # raises on a mismatch
