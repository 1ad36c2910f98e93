"""The model-folder checker: passes every real layout, and names each broken invariant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from langadapt.cli import app
from langadapt.errors import LangadaptError
from langadapt.train.check import assert_model_folder, check_model_folder


def test_every_tiny_layout_passes(tiny_model) -> None:
    report = check_model_folder(tiny_model, require_chat_template=True)
    assert report.ok, report.errors
    assert report.facts["vocab_size"] == report.facts["embedding_rows"] == report.facts["tokenizer_length"] == 600
    assert report.facts["padding_rows"] == 0


@pytest.mark.smollm2
def test_the_builtin_smollm2_passes(smollm2_dir) -> None:
    report = check_model_folder(smollm2_dir, require_chat_template=True)
    assert report.ok, report.errors
    assert report.facts["chat_end_token"] == "<|im_end|>" and report.facts["tie_word_embeddings"] is True


def broken_copy(source: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    return folder


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def add_rows(tensors: dict, count: int) -> None:
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[key] = torch.cat([tensors[key], torch.zeros(count, tensors[key].shape[1])])


def nan_row(tensors: dict) -> None:
    tensors["model.embed_tokens.weight"][5, 3] = float("nan")


def adapter_key(tensors: dict) -> None:
    tensors["model.layers.0.self_attn.q_proj.lora_A.weight"] = torch.zeros(4, 64)


def drop_head(tensors: dict) -> None:
    del tensors["lm_head.weight"]


def template_ending_with(end: str):
    def write(folder: Path) -> None:
        template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}" + end + "{% endfor %}"
        (folder / "chat_template.jinja").write_text(template)

    return write


BREAKAGES = {
    "config vocab_size": (lambda f: edit_json(f / "config.json", vocab_size=640),
                          "config.vocab_size is 640 but the input embeddings have 600"),
    "head bigger than embeddings": (lambda f: edit_weights(f, lambda t: t.__setitem__(
        "lm_head.weight", torch.zeros(610, 64))), "the LM head is 610×64 but the input embeddings are 600×64"),
    "tokenizer beyond the matrix": (lambda f: edit_json(f / "tokenizer.json", added_tokens=[
        *json.loads((f / "tokenizer.json").read_text())["added_tokens"],
        {"id": 600, "content": "gehiegi", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False}]),
        "the tokenizer has 601 tokens (highest id 600) but the model only 600"),
    "eos not in generation config": (lambda f: edit_json(f / "generation_config.json", eos_token_id=0),
                                     "the tokenizer's EOS '<|im_end|>' (id 2) is not among generation_config's "
                                     "eos ids [0]"),
    "generation eos outside vocabulary": (lambda f: edit_json(f / "generation_config.json", eos_token_id=[2, 700]),
                                          "generation_config eos id 700 is outside the vocabulary"),
    "adapter left in the folder": (lambda f: (f / "adapter_config.json").write_text("{}"), "holds a PEFT adapter"),
    "adapter weights not merged": (lambda f: edit_weights(f, adapter_key), "1 adapter weights left in the model"),
    "pickles": (lambda f: (f / "pytorch_model.bin").write_bytes(b"x"), "pickled files pytorch_model.bin"),
    "NaN embedding row": (lambda f: edit_weights(f, nan_row), "1 rows of model.embed_tokens.weight hold NaN"),
    "untied model without a head": (lambda f: edit_weights(f, drop_head), "the LM head (lm_head.weight) is missing"),
    "template without an end token": (template_ending_with("\n"), "puts nothing after an assistant answer"),
    "template ending in plain text": (template_ending_with("<END>\n"), "ends assistant turns with '<END>', which is "
                                      "not a single special token"),
    "special token the vocabulary lacks": (lambda f: edit_json(f / "tokenizer_config.json", pad_token="<pad>"),
                                           "the tokenizer has 601 tokens (highest id 600)"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_broken_invariant_is_named(tmp_path, tiny_llama, breakage) -> None:
    folder = broken_copy(tiny_llama, tmp_path)
    breaker, message = BREAKAGES[breakage]
    breaker(folder)
    report = check_model_folder(folder, require_chat_template=True)
    assert not report.ok
    assert any(message in error for error in report.errors), report.errors


def test_padding_rows_beyond_the_tokenizer_are_fine(tmp_path, tiny_llama) -> None:
    folder = broken_copy(tiny_llama, tmp_path)
    edit_weights(folder, lambda t: add_rows(t, 40))
    edit_json(folder / "config.json", vocab_size=640)
    report = check_model_folder(folder)
    assert report.ok, report.errors
    assert report.facts["padding_rows"] == 40


def test_the_chat_end_token_must_stop_generation(tmp_path, tiny_llama) -> None:
    folder = broken_copy(tiny_llama, tmp_path)  # the tiny tokenizer's EOS is <|im_end|>; make it <|endoftext|>
    edit_json(folder / "tokenizer_config.json", eos_token="<|endoftext|>")
    edit_json(folder / "generation_config.json", eos_token_id=0)
    errors = check_model_folder(folder).errors
    assert errors == ["the chat template ends assistant turns with '<|im_end|>' (id 2), which is not among "
                      "generation_config's eos ids [0] — generation would run past the answer; add it to "
                      "generation_config.eos_token_id"]


def test_assert_and_the_cli_report_the_problems(tmp_path, tiny_llama) -> None:
    assert assert_model_folder(tiny_llama).ok
    folder = broken_copy(tiny_llama, tmp_path)
    (folder / "adapter_config.json").write_text("{}")
    edit_json(folder / "config.json", vocab_size=640)
    with pytest.raises(LangadaptError, match=r"is inconsistent: .* \(\+1 more: run langadapt check"):
        assert_model_folder(folder)

    runner = CliRunner()
    good = runner.invoke(app, ["check", str(tiny_llama), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["facts"]["vocab_size"] == 600
    bad = runner.invoke(app, ["check", str(folder)])
    assert bad.exit_code == 1 and "2 problem(s)" in bad.stdout and "PEFT adapter" in bad.stderr
