"""Sweep expansion: the product, explicit variants, names, strict keys, every variant validated up front."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from langadapt.errors import ConfigError, LangadaptError
from langadapt.sweep.expand import check_variants, load_sweep
from tests.tiny import EU_DEV


def write(tmp_path: Path, sweep: dict, **sections: object) -> Path:
    data = {
        "name": "s", "output_dir": "out", "target_language": "eu",
        "models": {"base": "builtin:smollm2-135m-instruct", "instruct": "builtin:smollm2-135m-instruct"},
        "data": {"sources": {"eu": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"},
                             "en": {"path": str(EU_DEV), "text_field": "en", "language": "en"}}},
        "vocab": {"method": "extended", "vocab_size": 1000},
        "lep": {"method": "conversion"},
        **sections,
        "sweep": sweep,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def error(tmp_path: Path, sweep: dict, **sections: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_sweep(write(tmp_path, sweep, **sections))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_grid_is_the_product_in_key_order_named_from_its_values(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, {"grid": {"vocab.method": ["extended", "bpe"],
                                                 "lep.method": ["swap", "overlap", "conversion"]}}))
    assert [v.name for v in sweep.variants] == [
        "vocab-extended_lep-swap", "vocab-extended_lep-overlap", "vocab-extended_lep-conversion",
        "vocab-bpe_lep-swap", "vocab-bpe_lep-overlap", "vocab-bpe_lep-conversion"]
    variant = sweep.variants[3]
    assert variant.overrides == {"vocab.method": "bpe", "lep.method": "swap"}
    assert (variant.cfg.vocab.method, variant.cfg.lep.method, variant.cfg.vocab.vocab_size) == ("bpe", "swap", 1000)
    assert variant.cfg.output_dir == (tmp_path / "out" / "variants" / "vocab-bpe_lep-swap").resolve()
    assert variant.cfg.name == "s.vocab-bpe_lep-swap" and variant.cfg.sweep is None
    assert sweep.base.vocab.method == "extended" and sweep.runs == [v.cfg for v in sweep.variants]


def test_labelled_values_explicit_variants_and_dotted_labels_when_sections_repeat(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, {
        "grid": {"vocab": {"ext": {"method": "extended"}, "opt": {"method": "optimized", "keep": 20000}},
                 "cpt.learning_rate": [5.0e-4], "cpt.max_steps": [2, 4]},
        "variants": {"baseline": {}, "bpe-swap": {"vocab.method": "bpe", "lep.method": "swap"}},
    }, cpt={"mode": "embeddings"}, pack={"context_length": 64}, embed={"method": "mean"}))
    names = [v.name for v in sweep.variants]
    assert names == ["vocab-ext_cpt.learning_rate-0.0005_cpt.max_steps-2",
                     "vocab-ext_cpt.learning_rate-0.0005_cpt.max_steps-4",
                     "vocab-opt_cpt.learning_rate-0.0005_cpt.max_steps-2",
                     "vocab-opt_cpt.learning_rate-0.0005_cpt.max_steps-4", "baseline", "bpe-swap"]
    optimized = sweep.variants[2]
    assert optimized.cfg.vocab.keep == 20000 and optimized.cfg.vocab.vocab_size == 16000  # a value replaces
    assert optimized.labels == {"vocab": "opt", "cpt.learning_rate": "0.0005", "cpt.max_steps": "2"}
    assert optimized.cfg.cpt.max_steps == 2 and optimized.cfg.cpt.mode == "embeddings"
    baseline = sweep.variants[4]
    assert baseline.overrides == {} and baseline.cfg.vocab.method == "extended"
    assert sweep.variants[5].labels == {"vocab.method": "bpe", "lep.method": "swap"}


def test_a_config_without_a_sweep_is_its_only_run(tmp_path: Path) -> None:
    path = write(tmp_path, {"grid": {"seed": [1]}})
    data = yaml.safe_load(path.read_text())
    del data["sweep"]
    path.write_text(yaml.safe_dump(data))
    sweep = load_sweep(path)
    assert sweep.variants == [] and sweep.runs == [sweep.base]


def test_an_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    assert error(tmp_path, {"grid": {"vocab.methd": ["bpe"]}}) == (
        f"{tmp_path / 'sweep.yaml'}: sweep.grid: unknown key 'vocab.methd' — did you mean 'vocab.method'?")
    assert "sweep.variants.x: unknown key 'lpe.method' — did you mean 'lep.method'?" in error(
        tmp_path, {"variants": {"x": {"lpe.method": "swap"}}})
    assert "unknown key 'data.sources.eu.text_fild' — did you mean 'data.sources.eu.text_field'?" in error(
        tmp_path, {"grid": {"data.sources.eu.text_fild": ["eu"]}})  # mapping keys (eu) are free, fields are not
    assert "did you mean 'grid'?" in error(tmp_path, {"gird": {"seed": [1]}})


def test_empty_lists_reserved_keys_and_empty_sweeps_are_refused(tmp_path: Path) -> None:
    assert "'sweep.grid': 'vocab.method' lists no values — give at least one" in error(
        tmp_path, {"grid": {"vocab.method": []}})
    assert "'output_dir' cannot be swept" in error(tmp_path, {"grid": {"output_dir": ["a", "b"]}})
    assert "needs 'grid'" in error(tmp_path, {})
    assert "has the name of a grid variant" in error(
        tmp_path, {"grid": {"seed": [1]}, "variants": {"seed-1": {"seed": 2}}})
    assert "variant name 'a b'" in error(tmp_path, {"variants": {"a b": {}}})


def test_values_that_fail_the_schema_name_every_failing_variant(tmp_path: Path) -> None:
    message = error(tmp_path, {"grid": {"vocab.method": ["extended", "optimized", "bogus"]}})
    assert message.startswith(f"{tmp_path / 'sweep.yaml'}: variant 'vocab-optimized': ")
    assert "'vocab': method 'optimized' needs 'keep'" in message
    assert "variant 'vocab-bogus': 'vocab.method': input should be" in message
    assert "vocab-extended" not in message
    assert error(tmp_path, {"grid": {"vocab.method.x": [1]}}).endswith(
        "sweep key 'vocab.method.x': 'vocab.method' is not a mapping — sweep 'vocab.method' as a whole")


def test_stage_preflights_run_for_every_variant_and_name_it(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, {"variants": {"good": {}, "no-lep-model": {"models.instruct": None}}},
                             embed={"method": "mean"}))
    with pytest.raises(LangadaptError) as info:
        check_variants(sweep.variants, "sweep.yaml")
    assert str(info.value).startswith("sweep.yaml: variant 'no-lep-model': the lep stage needs models.instruct")
    assert "'good'" not in str(info.value)
