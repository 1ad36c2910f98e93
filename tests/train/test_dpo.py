"""DPO: the chosen-vs-rejected margin grows, the implicit LoRA reference is the starting model, and pairs that
do not fit are dropped and counted instead of truncated."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from langadapt.data.instruct import PreferencePair
from langadapt.errors import LangadaptError
from langadapt.train.check import check_model_folder
from langadapt.train.config import DpoConfig, TuningConfig
from langadapt.train.dpo import build_dpo_dataset, run_dpo
from langadapt.train.tuning import TuningJob, prepare_model, render

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUESTIONS = ["Zer da Calc?", "Nola gorde dezaket dokumentua?", "Zer egiten du Writer-ek?", "Non dago menua?",
             "Nola txertatu diagrama?", "Zer da taula bat?", "Nola inprimatu?", "Zer da estilo bat?"]
CHOSEN = "Galdera ona da, eta erantzuna euskaraz emango dizut."
REJECTED = "This is a good question, and I will answer it in English."


def toy_pairs(questions: list[str]) -> list[PreferencePair]:
    return [PreferencePair([{"role": "user", "content": q}], CHOSEN, REJECTED) for q in questions]


def answer_logprob(model, tokenizer, prompt, answer: str) -> float:
    """Sum of log p(answer tokens | prompt) under the chat template."""
    prefix = render(tokenizer, prompt, add_generation_prompt=True)
    full = render(tokenizer, [*prompt, {"role": "assistant", "content": answer}])
    ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
    start = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    return float(logprobs[torch.arange(start - 1, len(targets)), targets[start - 1 :]].sum())


def mean_margin(model_dir: Path, pairs: list[PreferencePair]) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    margins = [
        answer_logprob(model, tokenizer, p.prompt, p.chosen) - answer_logprob(model, tokenizer, p.prompt, p.rejected)
        for p in pairs
    ]
    return sum(margins) / len(margins)


@pytest.mark.parametrize("mode, loss_type", [("lora", "sigmoid"), ("full", "ipo")])
def test_dpo_raises_the_chosen_vs_rejected_margin(tmp_path, resized_tied, tiny_llama_tied, mode, loss_type) -> None:
    train, held_out = toy_pairs(QUESTIONS[:6]), toy_pairs(QUESTIONS[6:])
    settings = DpoConfig(data=[tmp_path], mode=mode, loss_type=loss_type, beta=0.1, max_steps=12, batch_size=6,
                         learning_rate=5e-3, logging_steps=4, max_length=128)
    job = TuningJob(model=str(resized_tied), tokenizer=str(resized_tied), original_tokenizer=str(tiny_llama_tied),
                    out=tmp_path / "out", work=tmp_path / "work", seed=0)
    metrics = run_dpo(job, settings, train)
    out = tmp_path / "out" / "model"
    assert check_model_folder(out, require_chat_template=True).ok
    for pairs in (train, held_out):
        before, after = mean_margin(resized_tied, pairs), mean_margin(out, pairs)
        assert after > before + 5.0, (before, after)
    assert metrics["reward_accuracy"] == 1.0 and metrics["reward_margin"] > 0
    assert metrics["loss_type"] == loss_type and (tmp_path / "out" / "adapter").exists() is (mode == "lora")


def test_with_lora_the_reference_is_the_starting_model(resized_tied) -> None:
    """TRL scores the reference with adapters off; that must undo the full-size embedding copies too."""
    model = AutoModelForCausalLM.from_pretrained(resized_tied, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 50, 60, 70, 600, 601, 2]])
    with torch.no_grad():
        start = model(input_ids=ids).logits.clone()
    wrapped = prepare_model(model, TuningConfig(), train_embeddings=True)
    with torch.no_grad():
        for param in wrapped.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
        moved = wrapped(input_ids=ids).logits
        with wrapped.disable_adapter():
            reference = wrapped(input_ids=ids).logits
    assert not torch.allclose(moved, start)
    torch.testing.assert_close(reference, start)


def test_pairs_that_do_not_fit_are_dropped_and_counted(tiny_llama) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    long_prompt = PreferencePair([{"role": "user", "content": "Galdera luzea. " * 40}], CHOSEN, REJECTED)
    long_answer = PreferencePair([{"role": "user", "content": "Zer?"}], CHOSEN * 20, REJECTED)
    fits = toy_pairs(QUESTIONS[:2])
    dataset, counts = build_dpo_dataset(tokenizer, [long_prompt, long_answer, *fits], max_length=200,
                                        max_prompt_length=60)
    assert counts == {"dropped_prompt_too_long": 1, "dropped_too_long": 1, "examples": 2}
    assert dataset["prompt"] == [p.prompt for p in fits]
    assert dataset["chosen"] == [[{"role": "assistant", "content": CHOSEN}]] * 2
    with pytest.raises(LangadaptError, match="no preference pair fits max_length 10"):
        build_dpo_dataset(tokenizer, fits, max_length=10, max_prompt_length=None)
