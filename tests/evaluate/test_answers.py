"""Generation task: ROUGE with a Unicode tokenizer, language ID, the judge protocol, prompt-file checks."""

from __future__ import annotations

import json
import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from langadapt.errors import LangadaptError
from langadapt.evaluate.answers import (
    PromptItem,
    UnicodeWordTokenizer,
    generate_task,
    read_prompt_file,
    rouge_scores,
)
from langadapt.evaluate.langid import detect_languages, warn_if_not
from langadapt.judge import Judge, JudgeConfig
from tests.conftest import INSTRUCT_REPLY


def test_rouge_keeps_non_ascii_words() -> None:
    assert (UnicodeWordTokenizer().tokenize("Ёжик в тумане, Gaztelu-ataria!")
            == ["ёжик", "в", "тумане", "gaztelu", "ataria"])
    # 2 of 3 unigrams shared: P = R = F1 = 2/3; one shared bigram of two: 1/2.
    scores = rouge_scores(["кошка сидит дома"], ["кошка спит дома"])
    assert scores["rouge1"] == pytest.approx(2 / 3)
    assert scores["rouge2"] == 0.0
    assert scores["rougeL"] == pytest.approx(2 / 3)
    assert rouge_scores(["Diagrama berria sortu"], ["diagrama berria sortu"])["rouge2"] == 1.0


def test_language_id_and_the_declared_language_warning(basque_dev_texts, english_texts, caplog) -> None:
    basque = [t for t in basque_dev_texts if len(t) > 80][:30]  # paragraphs, not menu labels
    english = [t for t in english_texts if len(t) > 80][:30]
    assert detect_languages([basque[0], english[0]]) == ["eu", "en"]
    with caplog.at_level(logging.WARNING, logger="langadapt.eval"):
        assert warn_if_not(english, "eu", "eval source 'x'") == "en"
        assert warn_if_not(basque, "eu", "eval source 'y'") is None
    assert "eval source 'x' is declared 'eu' but reads as 'en'" in caplog.text
    assert "'y'" not in caplog.text


class _Judge(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Judge.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        reply = "4" if "Bai" in body["messages"][0]["content"] else "no idea"
        payload = json.dumps({"choices": [{"message": {"content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def judge_url():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_generate_task_with_judge(instruct, judge_url, monkeypatch) -> None:
    model, tokenizer = instruct
    monkeypatch.setenv("TEST_JUDGE_KEY", "secret-value")
    items = [PromptItem("Idatzi zerbait.", reference=INSTRUCT_REPLY), PromptItem("Zer moduz?")]
    judge = JudgeConfig(url=judge_url, model="judge-model", api_key_env="TEST_JUDGE_KEY")
    metrics = generate_task(model, tokenizer, items, language="eu", max_new_tokens=16, judge=judge)
    assert [item["answer"] for item in metrics["items"]] == [INSTRUCT_REPLY, INSTRUCT_REPLY]
    expected_rate = sum(code == "eu" for code in detect_languages([INSTRUCT_REPLY] * 2)) / 2
    assert metrics["target_language_rate"] == expected_rate
    assert metrics["rouge1"] == 1.0 and metrics["rougeL"] == 1.0  # only the item with a reference counts
    assert metrics["judge_mean"] == 4.0 and [item["judge"] for item in metrics["items"]] == [4, 4]
    request = _Judge.seen[-1]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer secret-value"
    assert request["body"]["model"] == "judge-model" and "secret-value" not in json.dumps(metrics)
    assert Judge(judge, "eu").grade("q", "ez dakit") is None  # no grade in the reply


def test_unreachable_judge_is_one_line() -> None:
    judge = JudgeConfig(url="http://127.0.0.1:9/v1", model="m", api_key_env=None, timeout_seconds=2, max_retries=1,
                        backoff_seconds=0)
    with pytest.raises(LangadaptError, match=r"the endpoint http://127.0.0.1:9/v1/chat/completions failed after 2 "
                                             r"attempt\(s\): cannot connect"):
        Judge(judge, "eu").grade("q", "a")


def test_prompt_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "kaixo"}\n{"reference": "x"}\n')
    with pytest.raises(LangadaptError, match=r"p\.jsonl line 2 has no non-empty 'prompt'"):
        read_prompt_file(path)
    path.write_text('{"prompt": "kaixo", "reference": "agur"}\n')
    assert read_prompt_file(path) == [PromptItem("kaixo", "agur")]


def test_pattern_rate_counts_answers_that_match_in_full(instruct) -> None:
    model, tokenizer = instruct
    items = [PromptItem("Idatzi zerbait."), PromptItem("Zer moduz?")]
    first_word = INSTRUCT_REPLY.split()[0]
    whole = generate_task(model, tokenizer, items, language="eu", max_new_tokens=16,
                          pattern=re.escape(first_word) + " .*")
    assert whole["pattern_rate"] == 1.0 and [item["matches"] for item in whole["items"]] == [True, True]
    prefix_only = generate_task(
        model, tokenizer, items, language="eu", max_new_tokens=16, pattern=re.escape(first_word)
    )
    assert prefix_only["pattern_rate"] == 0.0  # a match must cover the whole answer, not a prefix
    from langadapt.evaluate.answers import GenerateTask, GenerateTaskConfig

    scores = GenerateTask().item_scores({}, {"t": whole})
    assert scores["gen:t pattern_rate"].values == (1.0, 1.0) and scores["gen:t pattern_rate"].rate
    with pytest.raises(ValueError, match=r"pattern '\(' is not a regular expression"):
        GenerateTaskConfig(path="p.jsonl", pattern="(")
