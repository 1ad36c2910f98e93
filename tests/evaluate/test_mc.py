"""The four MC scorings against brute force (one full forward pass per choice), and task-file checks."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from langadapt.errors import LangadaptError
from langadapt.evaluate.mc import McFormat, McItem, encode_request, evaluate_mc, read_mc_file


def _items(texts: list[str], n: int, seed: int = 0) -> list[McItem]:
    """Contexts of very different lengths, text choices of different token lengths."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        context = " ".join(texts[i * 3 : i * 3 + rng.randint(1, 3)])
        choices = [texts[(i * 7 + k) % len(texts)][: rng.randint(3, 40)].strip() or "ez" for k in range(4)]
        items.append(McItem(f"Zein da {i}. galderaren erantzuna?", choices, rng.randrange(4), context or None))
    return items


def _brute_force(model, tokenizer, fmt: McFormat, item: McItem, shots: list[McItem]):
    prompt = fmt.prompt(item, shots, tokenizer)
    context, continuations = encode_request(tokenizer, prompt, [" " + a for a in fmt.answers(item)],
                                            add_special_tokens=not fmt.chat_template)
    loglik, first = [], []
    for cont in continuations:
        ids = torch.tensor([context + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        positions = torch.arange(len(context) - 1, len(context) + len(cont) - 1)
        token_logp = logp[positions, torch.tensor(cont)]
        loglik.append(token_logp.sum().item())
        first.append(math.exp(token_logp[0].item()))
    return loglik, first


def _prior(model, tokenizer, fmt: McFormat, item: McItem) -> list[float]:
    """log p(" " + answer) after the BOS token alone (the tiny tokenizers have one), one pass per choice."""
    prior = []
    for answer in fmt.answers(item):
        ids = [tokenizer.bos_token_id, *tokenizer(" " + answer, add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
        prior.append(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item())
    return prior


@pytest.mark.parametrize("answer_format", ["text", "letter"])
def test_scorings_match_brute_force(llama, basque_dev_texts, answer_format) -> None:
    model, tokenizer = llama
    items = _items(basque_dev_texts, 10)
    shots = _items(basque_dev_texts[200:], 1, seed=1)  # prompts stay < 512 positions
    fmt = McFormat(language="eu", answer_format=answer_format)
    result = evaluate_mc(model, tokenizer, items, fmt=fmt, shots=shots, batch_tokens=700)
    for item, record in zip(items, result.items, strict=True):
        loglik, first = _brute_force(model, tokenizer, fmt, item, shots)
        answers = fmt.answers(item)
        norm = [ll / len(a) for ll, a in zip(loglik, answers, strict=True)]
        mutual = [ll - p for ll, p in zip(loglik, _prior(model, tokenizer, fmt, item), strict=True)]
        assert record["mutual_info"]["scores"] == pytest.approx(mutual, abs=3e-4)
        assert record["loglik"]["scores"] == pytest.approx(loglik, abs=2e-4)
        assert record["loglik_norm"]["scores"] == pytest.approx(norm, abs=2e-4)
        assert record["first_token"]["scores"] == pytest.approx(first, abs=2e-5)
        for scoring, scores in (("loglik", loglik), ("loglik_norm", norm), ("first_token", first),
                                ("mutual_info", mutual)):
            # the prediction is the brute-force best (up to float noise between equal-scored choices)
            assert scores[record[scoring]["prediction"]] >= max(scores) - 2e-4
    for scoring in ("loglik", "loglik_norm", "first_token", "mutual_info"):
        expected = sum(r[scoring]["prediction"] == r["answer"] for r in result.items) / len(items)
        assert result.accuracy[scoring] == expected


def test_chat_prompt_and_batch_size_do_not_change_scores(instruct, basque_dev_texts) -> None:
    model, tokenizer = instruct
    items = _items(basque_dev_texts, 6, seed=2)
    fmt = McFormat(language="eu", answer_format="text", chat_template=True)
    small = evaluate_mc(model, tokenizer, items, fmt=fmt, batch_tokens=1)
    large = evaluate_mc(model, tokenizer, items, fmt=fmt, batch_tokens=100_000)
    for a, b, item in zip(small.items, large.items, items, strict=True):
        assert a["loglik"]["scores"] == pytest.approx(b["loglik"]["scores"], abs=2e-4)
        assert b["loglik"]["scores"] == pytest.approx(_brute_force(model, tokenizer, fmt, item, [])[0], abs=2e-4)
    prompt = fmt.prompt(items[0], [], tokenizer)
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\nErantzuna:")


def test_prompt_format() -> None:
    item = McItem("Zer da?", ["bat", "bi"], 1, "Testua.")
    fmt = McFormat(language="eu")
    assert fmt.prompt(item, [McItem("Eta hau?", ["x", "y"], 0)]) == (
        "Galdera: Eta hau?\nA. x\nB. y\nErantzuna: A\n\nTestua.\n\nGaldera: Zer da?\nA. bat\nB. bi\nErantzuna:"
    )
    assert McFormat(answer_format="text").prompt(item, []) == "Testua.\n\nQuestion: Zer da?\nAnswer:"


def _write(tmp_path: Path, records: list[object]) -> Path:
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"question": "q", "choices": ["a", "b"]}, "line 2 has no field.s. answer"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, r"line 2: answer 2 is out of range for 2 choices"),
        ({"question": "q", "choices": ["a", "b"], "answer": -1}, "line 2: answer -1 is out of range"),
        ({"question": "q", "choices": [], "answer": 0}, "line 2: choices is empty"),
        ({"question": "q", "choices": ["a", ""], "answer": 0}, "line 2: choices must be at least two non-empty"),
        ("{not json", "line 2 is not valid JSON"),
    ],
)
def test_task_file_errors_name_the_line(tmp_path: Path, bad: object, message: str) -> None:
    good = {"question": "q", "choices": ["a", "b"], "answer": 0}
    with pytest.raises(LangadaptError, match=message):
        read_mc_file(_write(tmp_path, [good, bad]), "t")


def test_task_file_reads(tmp_path: Path) -> None:
    items = read_mc_file(_write(tmp_path, [{"question": "q", "choices": ["a", "b"], "answer": 1, "context": "c"}]))
    assert items == [McItem("q", ["a", "b"], 1, "c")]
    with pytest.raises(LangadaptError, match="does not exist"):
        read_mc_file(tmp_path / "missing.jsonl")


def test_scoring_warns_about_no_deprecated_cache_argument(llama, basque_dev_texts) -> None:
    import warnings

    model, tokenizer = llama
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # transformers' `past_key_values` deprecation
        evaluate_mc(model, tokenizer, _items(basque_dev_texts, 2), fmt=McFormat(answer_format="text"))


def test_the_unconditional_context_is_bos_else_eos_else_an_error(llama) -> None:
    """lm-eval's prefix token for an empty context: BOS when the tokenizer has one, else EOS."""
    import copy

    from langadapt.evaluate.mc import encode_unconditional

    _, tokenizer = llama
    choices = [" bai", " ez dakit"]
    expected = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    with_bos = encode_unconditional(tokenizer, choices)
    assert with_bos.context == [tokenizer.bos_token_id] and with_bos.continuations == expected
    assert with_bos.lengths == [4, 9]
    no_bos = copy.deepcopy(tokenizer)
    no_bos.bos_token = None
    assert encode_unconditional(no_bos, choices).context == [tokenizer.eos_token_id]
    no_bos.eos_token = None
    with pytest.raises(LangadaptError, match="mutual_info scoring needs a BOS or EOS token"):
        encode_unconditional(no_bos, choices)
