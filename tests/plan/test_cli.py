"""The seed recipes validate (without their input files) and plan offline; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.config import load_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import check
from tests.tiny import REPO

SEEDS = ["lt-llama2", "lep-ru-llama3", "llama-eus"]
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


@pytest.mark.parametrize("seed", SEEDS)
def test_seeds_validate_without_their_input_files_but_not_with_them(seed: str) -> None:
    path = REPO / "examples" / f"{seed}.yaml"
    output = invoke("validate", "--no-files", str(path))
    assert "ok:" in output and "not checked (--no-files)" in output and "/corpora/" in output
    with pytest.raises(LangadaptError, match="/corpora/"):  # a real run's validation still reads them
        check(load_config(path))


def plan_json(*seeds: str, gpu: str = "H100") -> dict:
    output = invoke("plan", "--json", "--gpu", gpu, *(str(REPO / "examples" / f"{s}.yaml") for s in seeds))
    return json.loads(output)


def stage(variant: dict, name: str) -> dict:
    return next(s for s in variant["stages"] if s["stage"] == name)


def test_lt_llama2_plan_is_full_cpt_of_llama2_7b_by_hand() -> None:
    variant = plan_json("lt-llama2")["variants"][0]
    cpt = stage(variant, "cpt")
    tokens = 10_000_000_000 // 2048 * 2048
    matmul = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 32000 * 4096
    assert (cpt["tokens"], cpt["mode"], cpt["parameters"], cpt["scheme"], cpt["devices"]) == (
        tokens, "full", 6_738_415_616, "fsdp", 8)
    assert cpt["flops"] == (6 * matmul + 12 * 32 * 2048 * 4096) * tokens
    recompute = 2 * matmul + 4 * 32 * 2048 * 4096
    assert cpt["executed_flops"] == cpt["flops"] + recompute * tokens
    assert cpt["wall_seconds"] == pytest.approx(cpt["executed_flops"] / (8 * 989e12 * 0.4))
    assert cpt["configured_memory_bytes"] < 80e9  # FSDP over 8 GPUs with checkpointing fits an H100
    assert stage(variant, "sft")["tokens"] is None and variant["total"]["not_priced"] == ["sft"]


def test_lep_plan_trains_embeddings_of_the_extended_llama3() -> None:
    variant = plan_json("lep-ru-llama3")["variants"][0]
    cpt = stage(variant, "cpt")
    vocab = 128_256 + 64_000  # upper bound before the vocab stage ran
    assert cpt["tokens"] == 20_000 * 256 * 1024 and cpt["mode"] == "embeddings"
    assert cpt["trained_parameters"] == 2 * vocab * 4096 and "upper bound" in cpt["architecture"]
    matmul = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336) + vocab * 4096
    assert cpt["flops"] == (4 * matmul + 2 * vocab * 4096 + 12 * 32 * 1024 * 4096) * cpt["tokens"]
    sft = stage(variant, "sft")
    assert sft["mode"] == "lora" and sft["configured_memory_bytes"] > 80e9  # one GPU: needs an H200
    h200 = stage(plan_json("lep-ru-llama3", gpu="H200")["variants"][0], "sft")
    assert h200["configured_memory_bytes"] < 141e9


def test_llama_eus_plan_is_four_epochs_on_zero3_and_variants_sum() -> None:
    result = plan_json("llama-eus", "lt-llama2")
    eus = result["variants"][0]
    cpt = stage(eus, "cpt")
    assert cpt["tokens"] == 4 * (1_875_000_000 // 4096 * 4096) and cpt["scheme"] == "zero3"
    zero3 = next(r for r in cpt["memory"] if r["configured"])
    assert zero3["scheme"] == "zero3" and zero3["total_checkpointed"] == cpt["configured_memory_bytes"] < 80e9
    assert all(stage(eus, s)["configured_memory_bytes"] < 80e9 for s in ("sft", "dpo"))
    assert result["total"]["flops"] == sum(v["total"]["flops"] for v in result["variants"])


def test_plan_prints_tables_and_refuses_an_unknown_model_in_one_line(tmp_path: Path) -> None:
    output = invoke("plan", str(REPO / "examples" / "llama-eus.yaml"))
    assert "ZeRO-3" in output and "▶" in output and "cpt tokens: 4 epoch(s)" in output
    config = tmp_path / "run.yaml"
    config.write_text(f"name: x\noutput_dir: {tmp_path / 'run'}\ntarget_language: eu\n"
                      "models: {base: someorg/some-model}\n"
                      "data: {sources: {eu: {path: someorg/corpus, format: hub}}}\n"
                      "pack: {total_tokens: 1000}\ncpt: {mode: full}\n")
    result = subprocess.run([sys.executable, "-m", "langadapt.cli", "plan", str(config)], capture_output=True,
                            text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "someorg/some-model" in lines[0] and "--model-config PATH" in lines[0]


def test_plan_has_help_and_refuses_bad_options(tmp_path: Path) -> None:
    assert "Usage" in invoke("plan", "--help")
    seed = str(REPO / "examples" / "llama-eus.yaml")
    for args, needle in ((["--gpu", "TPU9"], "unknown GPU 'TPU9' — choose one of: H100"),
                         (["--mfu", "1.5"], "--mfu 1.5 must be a share")):
        result = runner.invoke(app, ["plan", seed, *args])
        assert isinstance(result.exception, LangadaptError) and needle in str(result.exception)
    config = tmp_path / "lora.yaml"
    config.write_text(f"name: x\noutput_dir: {tmp_path / 'run'}\ntarget_language: eu\n"
                      "models: {base: meta-llama/Llama-3.1-8B}\n"
                      "data: {sources: {eu: {path: someorg/corpus, format: hub}}}\n"
                      "pack: {total_tokens: 100000}\ncpt: {mode: lora, lora: {target_modules: [qkv_proj]}}\n")
    result = runner.invoke(app, ["plan", str(config)])
    assert "cpt.lora.target_modules ['qkv_proj'] are not linear layers" in str(result.exception)
