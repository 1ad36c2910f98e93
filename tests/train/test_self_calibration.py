"""Self-calibration: generation once and resumed, the answer filters, the judge (a local HTTP server)."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from langadapt.errors import LangadaptError
from langadapt.judge import Judge
from langadapt.train.config import CalibrationJudgeConfig
from langadapt.train.self_calibration import SelfAnswer, filter_answers, generate_answers
from tests.conftest import INSTRUCT_REPLY
from tests.data.test_instruct import assistant, user


def test_self_calibration_answers_are_generated_once_and_resumed(tmp_path, tiny_instruct_pair) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_instruct_pair.instruct).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_instruct_pair.instruct)
    prompts = [[user(f"Galdera {i}")] for i in range(5)] + [[{"role": "system", "content": "Sys"}, user("Kaixo"),
                                                             assistant("x"), user("y")]]
    cache = tmp_path / "answers.jsonl"
    answers = generate_answers(model, tokenizer, prompts[:3], max_new_tokens=16, batch_size=2, cache=cache)
    assert [a.answer for a in answers] == [INSTRUCT_REPLY] * 3 and all(a.stopped for a in answers)
    assert len(cache.read_text().splitlines()) == 3
    # A re-run reads the three cached answers and generates only the rest.
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens=16, batch_size=2, cache=cache)
    assert len(cache.read_text().splitlines()) == 6 and len(answers) == 6
    assert answers[5].prompt == [{"role": "system", "content": "Sys"}, user("Kaixo")]  # first user turn only
    cut = generate_answers(model, tokenizer, prompts[:1], max_new_tokens=2, batch_size=1)
    assert not cut[0].stopped


def answer(text: str, stopped: bool = True) -> SelfAnswer:
    return SelfAnswer([user("Zer da Calc?")], text, stopped)


def test_filters_drop_unfinished_short_long_and_wrong_language_answers() -> None:
    basque = "Calc kalkulu-orriak egiteko programa da, eta datuak tauletan antolatzen ditu."
    answers = [answer(basque), answer(basque, stopped=False), answer("Bai"), answer(basque * 5),
               answer("Calc is a spreadsheet program that organises data in tables and charts.")]
    kept, scores, report = filter_answers(answers, min_chars=10, max_chars=200, language="eu")
    assert kept == [answers[0]] and scores == [None]
    assert report.to_dict() == {"kept": 1, "dropped": {"unfinished": 1, "too_short": 1, "too_long": 1,
                                                       "wrong_language": 1}, "judge_scores": {}}


class FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions endpoint scoring by a keyword in the graded answer."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeJudge.seen.append({"auth": self.headers.get("Authorization"), "body": body})
        if self.headers.get("Authorization") != "Bearer sk-test-secret-123":
            self.send_response(401)
            self.end_headers()
            return
        prompt = body["messages"][0]["content"]
        score = "5" if "bikaina" in prompt else "Score: 2" if "txarra" in prompt else "no idea"
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": score}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def judge_url():
    server = HTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeJudge.seen = []
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_the_judge_scores_answers_and_keeps_those_at_the_threshold(judge_url, monkeypatch, caplog) -> None:
    monkeypatch.setenv("JUDGE_KEY", "sk-test-secret-123")
    settings = CalibrationJudgeConfig(url=judge_url, model="grader", api_key_env="JUDGE_KEY", threshold=4,
                                      concurrency=2, max_retries=0)
    answers = [answer("Erantzun bikaina da hau."), answer("Erantzun txarra."), answer("Ez dakit zer den.")]
    with caplog.at_level(logging.DEBUG):
        kept, scores, report = filter_answers(answers, judge=Judge(settings, "eu"), threshold=settings.threshold)
    assert kept == [answers[0]] and scores == [5]
    assert report.to_dict()["dropped"] == {"judge_below_threshold": 1, "judge_unparsed": 1}
    assert report.to_dict()["judge_scores"] == {"2": 1, "5": 1}
    request = FakeJudge.seen[0]
    assert request["auth"] == "Bearer sk-test-secret-123" and request["body"]["model"] == "grader"
    assert "written in Basque" in request["body"]["messages"][0]["content"]
    assert "sk-test-secret-123" not in caplog.text


def test_judge_errors_name_the_variable_never_the_key(judge_url, monkeypatch) -> None:
    settings = CalibrationJudgeConfig(url=judge_url, model="grader", api_key_env="JUDGE_KEY")
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(LangadaptError, match="environment variable JUDGE_KEY, which is not set"):
        Judge(settings, "eu")
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong-key-456")
    with pytest.raises(LangadaptError) as error:
        Judge(settings, "eu").grade("a", "b")
    assert "HTTP 401 — check the key in JUDGE_KEY" in str(error.value) and "sk-wrong" not in str(error.value)
