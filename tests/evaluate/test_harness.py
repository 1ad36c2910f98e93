"""The lm-eval bridge: our MC tasks run as lm-eval tasks give lm-eval's own predictions = ours."""

from __future__ import annotations

import math
import sys

import pytest

from langadapt.errors import LangadaptError
from langadapt.evaluate.harness import export_mc_task, run_lm_eval
from langadapt.evaluate.mc import McFormat, evaluate_mc
from tests.evaluate.test_mc import _items


def test_exported_task_matches_our_scorer(llama, basque_dev_texts, tmp_path) -> None:
    model, tokenizer = llama
    items = _items(basque_dev_texts, 8, seed=5)
    fmt = McFormat(language="eu", answer_format="text")
    ours = evaluate_mc(model, tokenizer, items, fmt=fmt)
    export_mc_task(items, tmp_path, "eu_tiny", fmt=fmt)
    results = run_lm_eval(model, tokenizer, ["eu_tiny"], include_path=tmp_path, batch_size=4, log_samples=True)
    assert results["eu_tiny"]["acc"] == pytest.approx(ours.accuracy["loglik"])
    assert results["eu_tiny"]["acc_norm"] == pytest.approx(ours.accuracy["loglik_norm"])
    assert results["eu_tiny"]["acc_mutual_info"] == pytest.approx(ours.accuracy["mutual_info"])
    samples = sorted(results["samples"]["eu_tiny"], key=lambda s: s["doc_id"])
    for sample, record in zip(samples, ours.items, strict=True):
        lls = [ll for ll, _ in sample["filtered_resps"]]  # conditional, then unconditional (for acc_mutual_info)
        conditional, prior = lls[: len(lls) // 2], lls[len(lls) // 2 :]
        assert conditional == pytest.approx(record["loglik"]["scores"], abs=2e-4)
        mutual = [c - p for c, p in zip(conditional, prior, strict=True)]
        assert mutual == pytest.approx(record["mutual_info"]["scores"], abs=3e-4)
    with pytest.raises(LangadaptError, match=r"lm-eval knows no task\(s\) no_such_task"):
        run_lm_eval(model, tokenizer, ["no_such_task"], include_path=tmp_path)


def test_missing_lm_eval_says_how_to_install(llama, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.raises(LangadaptError, match=r"pip install langadapt\[eval\]"):
        run_lm_eval(*llama, ["x"])


def test_letter_prompts_and_first_token_agree_with_a_native_lm_eval_task(llama, basque_dev_texts, tmp_path) -> None:
    """An oracle that shares none of our prompt code: the letter format written as lm-eval's own Jinja task
    (question, lettered options, answer word, " A".." D" continuations). lm-eval's loglikelihood of a one-token
    continuation is log p(first token), so it checks `loglik` and `first_token` and the prompt layout at once."""
    import json

    model, tokenizer = llama
    items = _items(basque_dev_texts, 8, seed=9)
    data = tmp_path / "native.jsonl"
    data.write_text("".join(json.dumps({"question": i.question, "context": i.context or "", "choices": i.choices,
                                        "answer": i.answer}, ensure_ascii=False) + "\n" for i in items))
    template = ("{% if context %}{{context}}\n\n{% endif %}Galdera: {{question}}\n"
                "{% for c in choices %}{{ 'ABCD'[loop.index0] }}. {{c}}\n{% endfor %}Erantzuna:")
    spec = {"task": "native_letters", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": template,
            "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer", "target_delimiter": " ",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    (tmp_path / "native_letters.yaml").write_text(json.dumps(spec))
    results = run_lm_eval(model, tokenizer, ["native_letters"], include_path=tmp_path, log_samples=True)
    ours = evaluate_mc(model, tokenizer, items, fmt=McFormat(language="eu", answer_format="letter"))
    single = [k for k, letter in enumerate("ABCD")  # letters the tiny tokenizer writes as one token after a space
              if len(tokenizer("Erantzuna: " + letter, add_special_tokens=False)["input_ids"])
              == len(tokenizer("Erantzuna:", add_special_tokens=False)["input_ids"]) + 1]
    assert single  # for those, lm-eval's loglikelihood is exactly log p(first token)
    samples = sorted(results["samples"]["native_letters"], key=lambda s: s["doc_id"])
    for sample, record in zip(samples, ours.items, strict=True):
        theirs = [ll for ll, _ in sample["filtered_resps"]]
        assert record["loglik"]["scores"] == pytest.approx(theirs, abs=2e-4)
        first = [record["first_token"]["scores"][k] for k in single]  # probabilities, rounded to 6 decimals
        assert first == pytest.approx([math.exp(theirs[k]) for k in single], abs=2e-6)
    assert results["native_letters"]["acc"] == pytest.approx(ours.accuracy["loglik"])
