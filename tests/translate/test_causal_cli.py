"""The local causal-LM path (a tiny random Llama) and the `langadapt translate` verb: outputs, the cache that
makes a second run call no model, and one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from langadapt.translate.backends import make_backend
from tests.data.test_instruct import write_jsonl
from tests.test_cli import assert_one_line_error
from tests.translate.conftest import settings

PROMPT = "Translate from {source_language} to {target_language}:\n{text}"


def greedy_first_line(model_dir: Path, prompt: str, max_new_tokens: int) -> str:
    """The model's own greedy continuation of the chat-rendered prompt, up to its first newline."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip().split("\n")[0].strip()


@pytest.mark.usefixtures("one_torch_thread")
def test_causal_backend_is_the_models_greedy_first_line(tiny_llama: Path) -> None:
    backend = make_backend(settings({"kind": "causal_lm", "model": str(tiny_llama), "prompt": PROMPT,
                                     "max_new_tokens": 10, "batch_size": 1}).backend)
    texts = ["Open the file.", "Save the document as a PDF file."]
    got = dict(backend.translate(texts, "en", "eu"))
    for index, text in enumerate(texts):
        assert got[index] == greedy_first_line(tiny_llama, f"Translate from English to Basque:\n{text}", 10)
    assert backend.usage.calls == 2 and 0 < backend.usage.tokens_out <= 20


def langadapt(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LANGADAPT_HOME": str(home)} if home else None
    return subprocess.run([sys.executable, "-m", "langadapt.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_the_verb_twice_the_second_time_without_model_calls(tmp_path: Path, tiny_llama: Path) -> None:
    source = write_jsonl(tmp_path / "mini-en.jsonl", [
        {"instruction": "Write a haiku about {topic}.", "output": "Leaves fall.\nSee https://example.com."},
        {"question": "missing its format"},
        {"instruction": "List two colours.", "input": "", "output": "- red\n- blue"},
    ])
    config = tmp_path / "t.yaml"
    config.write_text(json.dumps({"target_language": "eu", "translate": {
        "backend": {"kind": "causal_lm", "model": str(tiny_llama), "prompt": PROMPT, "max_new_tokens": 6},
        "filters": {"language": False}}}))
    home = tmp_path / "home"  # the default cache lives in $LANGADAPT_HOME/cache
    first = langadapt("translate", str(source), "--config", str(config), "--out", str(tmp_path / "one"), home=home)
    assert first.returncode == 0, first.stderr
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    metrics = manifest["metrics"]
    assert metrics["datasets"]["mini-en"]["rows_in"] == 3
    assert metrics["datasets"]["mini-en"]["dropped"].get("missing_field") == 1
    kept, dropped = (len((tmp_path / "one" / f"mini-en{s}.jsonl").read_text().splitlines()) for s in ("", ".dropped"))
    assert kept + dropped == 3 and kept == metrics["datasets"]["mini-en"]["rows_out"]
    # Segments: "Write a haiku about <m0>.", "Leaves fall.", "See <m0>.", "List two colours.", "red", "blue".
    assert metrics["segments"]["translated"] == 6 and metrics["backend"]["calls"] >= 1
    assert manifest["translate"]["backend"]["model"] == str(tiny_llama)
    assert (home / "cache" / "translate.sqlite").exists()

    second = langadapt("translate", str(source), "--config", str(config), "--out", str(tmp_path / "two"), home=home)
    assert second.returncode == 0, second.stderr
    assert "model calls=0" in second.stdout
    again = json.loads((tmp_path / "two" / "manifest.json").read_text())["metrics"]
    assert again["segments"]["cached"] == 6 and again["segments"]["translated"] == 0
    assert (tmp_path / "two" / "mini-en.jsonl").read_text() == (tmp_path / "one" / "mini-en.jsonl").read_text()


@pytest.mark.parametrize(("args", "needles"), [
    (["--to", "en"], ["source and target are both 'en'"]),
    (["--to", "lt"], ["translates en -> eu, not en -> lt"]),
    (["--to", "eu", "--set", "backend.family=nllb"], ["nllb model", "has no language 'en'"]),
])
def test_bad_input_is_one_line(tmp_path: Path, tiny_marian: Path, args: list[str], needles: list[str]) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Hi", "output": "Hello"}])
    config = tmp_path / "t.yaml"
    config.write_text(json.dumps({"translate": {"backend": {"kind": "seq2seq", "model": str(tiny_marian)}}}))
    result = langadapt("translate", str(source), "--config", str(config), "--out", str(tmp_path / "o"), *args,
                       home=tmp_path / "home")
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "o").exists()
