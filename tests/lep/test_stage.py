"""The `embed` and `lep` stages inside `langadapt run`, and the `embed init` / `lep` verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import check, run_pipeline
from langadapt.runstore import RunStore
from langadapt.vocab.token_map import TokenMap
from tests.embeddings.helpers import extend_with_words
from tests.tiny import EU_DEV, EU_TRAIN


def config(tmp_path: Path, base: Path, instruct: Path | None, **sections: Any) -> dict[str, Any]:
    models = {"base": str(base), **({"instruct": str(instruct)} if instruct else {})}
    return {
        "name": "lep", "output_dir": str(tmp_path / "run"), "target_language": "eu", "models": models,
        "data": {
            "sources": {"basque": {"path": str(EU_TRAIN), "text_field": "eu", "language": "eu", "max_documents": 800}},
            "eval_sources": {"basque_dev": {"path": str(EU_DEV), "text_field": "eu", "language": "eu"}},
        },
        "vocab": {"method": "extended", "vocab_size": 900},
        **sections,
    }


def test_embed_and_lep_stages_write_models_and_metrics_and_skip_when_unchanged(
    tmp_path: Path, tiny_instruct_pair
) -> None:
    cfg = validate_config(config(tmp_path, tiny_instruct_pair.base, tiny_instruct_pair.instruct,
                                 embed={"method": "mean"}, lep={"method": "conversion"}), base_dir=tmp_path)
    run_pipeline(cfg)
    run = tmp_path / "run"
    store = RunStore(run)
    embed, lep = store.manifest("embed")["metrics"], store.manifest("lep")["metrics"]
    token_map = TokenMap.load(run / "vocab" / "tokenizer")
    assert TokenMap.load(run / "embed" / "model") == token_map
    assert embed["new_rows"] == len(token_map.new_ids()) > 0 and embed["kept_rows"] == token_map.base_vocab_size
    assert embed["summary"]["new rows"] == embed["new_rows"]
    assert lep["donor_stage"] == "embed" and lep["method"] == "conversion"
    assert lep["same_model"] is False and lep["warnings"] == []
    assert set(lep["maps"]) == {"embed_tokens", "lm_head"} and lep["maps"]["lm_head"]["residual"] > 0
    assert lep["summary"]["embed_tokens residual"] == lep["maps"]["embed_tokens"]["residual"]
    model = AutoModelForCausalLM.from_pretrained(run / "lep" / "model")
    tokenizer = AutoTokenizer.from_pretrained(run / "lep" / "model")
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == token_map.vocab_size
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_instruct_pair.instruct).chat_template
    assert torch.isfinite(model(torch.tensor([[1, len(tokenizer) - 1]])).logits).all()

    assert [r.status for r in run_pipeline(cfg)] == ["skipped"] * 4
    changed = validate_config(config(tmp_path, tiny_instruct_pair.base, tiny_instruct_pair.instruct,
                                     embed={"method": "mean"}, lep={"method": "swap"}), base_dir=tmp_path)
    assert [r.status for r in run_pipeline(changed)] == ["skipped"] * 3 + ["ran"]


def test_lep_with_the_base_as_instruct_model_says_so_and_records_it(tmp_path: Path, tiny_instruct_pair, caplog) -> None:
    from langadapt.lep.stages import SAME_MODEL

    base = tiny_instruct_pair.base
    cfg = validate_config(config(tmp_path, base, base, embed={"method": "mean"}, lep={"method": "conversion"}),
                          base_dir=tmp_path)
    with caplog.at_level("WARNING", logger="langadapt"):
        run_pipeline(cfg)
    lep = RunStore(tmp_path / "run").manifest("lep")["metrics"]
    assert lep["same_model"] is True and lep["warnings"] == [SAME_MODEL]
    assert all(fit["identity_deviation"] < 1e-6 for fit in lep["maps"].values())
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"].count(SAME_MODEL) == 1


def test_lep_without_an_instruct_model_is_refused_by_validate(tmp_path: Path, tiny_llama: Path) -> None:
    cfg = validate_config(config(tmp_path, tiny_llama, None, embed={}, lep={}), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=r"the lep stage needs models\.instruct"):
        check(cfg)
    with pytest.raises(LangadaptError, match="needs stage"):
        check(validate_config(config(tmp_path, tiny_llama, tiny_llama, lep={}), base_dir=tmp_path))


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_lep_after_a_trained_body_is_refused_unless_allowed(tmp_path: Path, tiny_instruct_pair, mode: str) -> None:
    pair = tiny_instruct_pair
    pack = {"context_length": 32}
    cfg = validate_config(config(tmp_path, pair.base, pair.instruct, pack=pack, embed={}, cpt={"mode": mode},
                                 lep={}), base_dir=tmp_path)
    with pytest.raises(LangadaptError, match=rf"lep after cpt.mode {mode}: LEP propagates only the donor's "
                                             "embeddings.*set lep.allow_trained_body: true"):
        check(cfg)
    allowed = config(tmp_path, pair.base, pair.instruct, pack=pack, embed={}, cpt={"mode": mode},
                     lep={"allow_trained_body": True})
    check(validate_config(allowed, base_dir=tmp_path))
    check(validate_config(config(tmp_path, pair.base, pair.instruct, pack=pack, embed={},
                                 cpt={"mode": "embeddings"}, lep={}), base_dir=tmp_path))


def test_lep_reads_the_base_tokenizer_from_models_tokenizer(tmp_path: Path, tiny_instruct_pair) -> None:
    """A base folder without tokenizer files: LEP must take B's tokenizer from models.tokenizer."""
    import shutil

    from langadapt.lep.propagate import check_inputs

    pair = tiny_instruct_pair
    bare = tmp_path / "bare-base"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (pair.base / name).exists():
            shutil.copy(pair.base / name, bare / name)
    tokenizer_dir, _ = extend_with_words(pair.base, ["kaixomundua"], tmp_path / "tok")
    donor = tmp_path / "donor"
    from langadapt.embeddings.surgery import embed_model

    embed_model(pair.base, tokenizer_dir, donor)
    with pytest.raises(Exception):  # noqa: B017 — transformers finds no tokenizer in the bare folder
        check_inputs(bare, pair.instruct, donor)
    inputs = check_inputs(bare, pair.instruct, donor, base_tokenizer=pair.base)
    assert len(inputs.base_tokenizer) == inputs.token_map.base_vocab_size


def langadapt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "langadapt.cli", *args], capture_output=True, text=True, timeout=300)


def test_embed_init_and_lep_verbs_write_folders_atomically(tmp_path: Path, tiny_instruct_pair) -> None:
    tokenizer, _ = extend_with_words(tiny_instruct_pair.base, ["Kaixoñ", "mundua"], tmp_path / "tok")
    donor = tmp_path / "donor"
    result = langadapt("embed", "init", "--model", str(tiny_instruct_pair.base), "--tokenizer", str(tokenizer),
                       "--out", str(donor))
    assert result.returncode == 0, result.stderr
    assert "2 new rows" in result.stdout
    manifest = json.loads((donor / "manifest.json").read_text())
    assert manifest["metrics"]["new_rows"] == 2 and (donor / "token_map.json").exists()

    again = langadapt("embed", "init", "--model", str(tiny_instruct_pair.base), "--tokenizer", str(tokenizer),
                      "--out", str(donor))
    assert again.returncode != 0 and "already exists" in again.stderr

    out = tmp_path / "lep"
    result = langadapt("lep", "--base", str(tiny_instruct_pair.base), "--instruct", str(tiny_instruct_pair.instruct),
                       "--donor", str(donor), "--method", "overlap", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "manifest.json").read_text())["metrics"]["method"] == "overlap"
    assert len(AutoTokenizer.from_pretrained(out)) == len(AutoTokenizer.from_pretrained(donor))

    failed = langadapt("lep", "--base", str(tiny_instruct_pair.base), "--instruct", str(tiny_instruct_pair.instruct),
                       "--donor", str(tiny_instruct_pair.base), "--out", str(tmp_path / "never"))
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert failed.returncode != 0 and len(lines) == 1 and "has no token_map.json" in lines[0]
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".tmp-*"))
