"""Instruction data: formats and their errors, the copy task, self-calibration generation and its filters
(the OpenAI-compatible judge is a local HTTP server: no network)."""

from __future__ import annotations

import gzip
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from langadapt.data.instruct import (
    COPY_TASK_INSTRUCTIONS,
    Judge,
    PreferencePair,
    SelfAnswer,
    copy_task_conversations,
    filter_answers,
    generate_answers,
    load_conversations,
    load_preferences,
    load_prompts,
    split_sentences,
)
from langadapt.errors import LangadaptError
from langadapt.train.config import JudgeSettings
from tests.conftest import INSTRUCT_REPLY


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def test_each_format_becomes_the_same_kind_of_conversation(tmp_path) -> None:
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [
        {"instruction": "Itzuli ingelesera", "input": "Kaixo", "output": "Hello"},
        {"instruction": "Esan kaixo", "input": "", "output": "Kaixo!", "system": "Atsegina zara."},
    ])
    chat = write_jsonl(tmp_path / "chat.jsonl.gz", [{"messages": [user("Zer moduz?"), assistant("Ondo.")]}])
    sharegpt = tmp_path / "sharegpt.json"  # one JSON list, ShareGPT roles
    sharegpt.write_text(json.dumps([{"conversations": [{"from": "human", "value": "Bai?"}, {"from": "gpt", "value": "Ez."}]}]))
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Zer da Calc?", "answer": "Kalkulu-orri bat."}])
    conversations, report = load_conversations([alpaca, chat, sharegpt, qa])
    assert conversations == [
        [user("Itzuli ingelesera\n\nKaixo"), assistant("Hello")],
        [{"role": "system", "content": "Atsegina zara."}, user("Esan kaixo"), assistant("Kaixo!")],
        [user("Zer moduz?"), assistant("Ondo.")],
        [user("Bai?"), assistant("Ez.")],
        [user("Zer da Calc?"), assistant("Kalkulu-orri bat.")],
    ]
    assert list(report.formats.values()) == ["alpaca", "chat", "chat", "qa"] and report.rows == 5


def test_an_unknown_format_names_the_fields_found_and_the_formats_accepted(tmp_path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "kaixo", "lang": "eu"}])
    with pytest.raises(LangadaptError) as error:
        load_conversations([bad])
    message = str(error.value)
    assert message.startswith("bad.jsonl:1: no known instruction format (fields: lang, text) — accepted: alpaca")
    assert "chat (messages" in message and "Q/A (question, answer)" in message and "preference (prompt" in message


@pytest.mark.parametrize("rows, message", [
    ([{"question": "a", "answer": "b"}, {"instruction": "c", "output": "d"}], "bad.jsonl:2: a alpaca row in a qa file"),
    ([{"messages": [{"role": "tool", "content": "x"}]}], "unknown role 'tool'"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}], "this is a preference file — preference files belong under dpo.data"),
    ([{"question": "a", "answer": 3}], "field 'answer' must be a string, got int"),
])
def test_malformed_instruction_files_are_one_line_errors(tmp_path, rows, message) -> None:
    with pytest.raises(LangadaptError, match=message):
        load_conversations([write_jsonl(tmp_path / "bad.jsonl", rows)])


def test_rows_that_cannot_train_are_dropped_and_counted(tmp_path, caplog) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [
        {"messages": [user("a"), assistant("ondo")]},
        {"messages": [user("b"), assistant("  ")]},
        {"messages": [user("c"), assistant("bai"), user("d"), assistant("")]},
        {"messages": [user("e")]},
        {"messages": [assistant("Kaixo!"), user("f"), assistant("g")]},
    ])
    with caplog.at_level(logging.WARNING, logger="langadapt"):
        conversations, report = load_conversations([path])
    assert conversations == [[user("a"), assistant("ondo")]]
    assert report.to_dict()["dropped"] == {"empty_answer": 2, "no_answer": 1, "answer_before_question": 1}
    assert "dropped 2 of 5 instruction rows: empty answer" in caplog.text


def test_preference_pairs_in_plain_and_chat_form(tmp_path) -> None:
    path = write_jsonl(tmp_path / "prefs.jsonl", [
        {"prompt": "Zer da Calc?", "chosen": "Kalkulu-orri bat.", "rejected": "A spreadsheet."},
        {"prompt": "Kaixo", "chosen": [user("Kaixo"), assistant("Kaixo!")], "rejected": [user("Kaixo"), assistant("Hi!")]},
        {"chosen": [user("Bai?"), assistant("Bai.")], "rejected": [user("Bai?"), assistant("Yes.")]},
        {"prompt": [user("Ezer?")], "chosen": [assistant("Ez.")], "rejected": [assistant("No.")]},
        {"prompt": "Berdin", "chosen": "Bai.", "rejected": " Bai. "},
        {"prompt": "Hutsik", "chosen": "", "rejected": "No."},
    ])
    pairs, report = load_preferences([path])
    assert pairs == [
        PreferencePair([user("Zer da Calc?")], "Kalkulu-orri bat.", "A spreadsheet."),
        PreferencePair([user("Kaixo")], "Kaixo!", "Hi!"),
        PreferencePair([user("Bai?")], "Bai.", "Yes."),
        PreferencePair([user("Ezer?")], "Ez.", "No."),
    ]
    assert report.dropped == {"chosen_equals_rejected": 1, "empty_answer": 1}
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "chosen": "b", "rejected": [assistant("c")]}])
    with pytest.raises(LangadaptError, match="must both be strings or both be message lists"):
        load_preferences([mixed])
    sft_rows = write_jsonl(tmp_path / "qa.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(LangadaptError, match="a qa row where preference pairs are expected"):
        load_preferences([sft_rows])


def test_prompts_come_from_any_format(tmp_path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Zer da Calc?"}])
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [user("a"), assistant("b"), user("c"), assistant("d")]}])
    assert load_prompts([prompts, chat]) == [[user("Zer da Calc?")], [user("a"), assistant("b"), user("c")]]


def test_split_sentences() -> None:
    assert split_sentences("Kaixo. Zer moduz? Ondo!  Bai…ez") == ["Kaixo.", "Zer moduz?", "Ondo!", "Bai…ez"]


def test_the_copy_task_asks_to_repeat_corpus_texts_verbatim(basque_texts) -> None:
    conversations, stats = copy_task_conversations(
        basque_texts, count=40, sentence_share=0.25, language="eu", seed=3, max_sentence_chars=200,
        max_paragraph_chars=600,
    )
    assert len(conversations) == 40 and stats == {"sentences": 10, "paragraphs": 30, "requested": 40}
    corpus = "\n".join(basque_texts)
    answers = [c[1]["content"] for c in conversations]
    assert len(set(answers)) == 40
    for question, answer in conversations:
        assert question["role"] == "user" and answer["role"] == "assistant"
        assert answer["content"] in corpus and 20 <= len(answer["content"]) <= 600
        assert any(question["content"] == t.format(text=answer["content"]) for t in COPY_TASK_INSTRUCTIONS["eu"])
    sentences = [a for a in answers if len(split_sentences(a)) == 1]
    assert len(sentences) >= 10 and all(len(s) <= 200 for s in sentences)
    again, _ = copy_task_conversations(basque_texts, count=40, sentence_share=0.25, language="eu", seed=3,
                                       max_sentence_chars=200, max_paragraph_chars=600)
    other, _ = copy_task_conversations(basque_texts, count=40, sentence_share=0.25, language="eu", seed=4,
                                       max_sentence_chars=200, max_paragraph_chars=600)
    assert again == conversations and other != conversations


def test_the_copy_task_says_when_the_corpus_is_short_or_the_language_unknown(caplog) -> None:
    texts = ["Lehen esaldia da hau. Bigarren esaldia da hau.", "Hirugarren esaldi luze samarra."]
    with caplog.at_level(logging.WARNING, logger="langadapt"):
        conversations, stats = copy_task_conversations(texts, count=10, sentence_share=0.5, language="eu", seed=0)
    assert stats == {"sentences": 3, "paragraphs": 1, "requested": 10} and len(conversations) == 4
    assert "yielded 4 of the 10 examples" in caplog.text
    with pytest.raises(LangadaptError, match="no built-in copy-task instructions for language 'xh'"):
        copy_task_conversations(texts, count=1, sentence_share=1.0, language="xh", seed=0)
    custom, _ = copy_task_conversations(texts, count=1, sentence_share=1.0, language="xh", seed=0,
                                        instructions=["Phinda: {text}"])
    assert custom[0][0]["content"] == "Phinda: " + custom[0][1]["content"]


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
    settings = JudgeSettings(url=judge_url, model="grader", api_key_env="JUDGE_KEY", threshold=4, workers=2)
    answers = [answer("Erantzun bikaina da hau."), answer("Erantzun txarra."), answer("Ez dakit zer den.")]
    with caplog.at_level(logging.DEBUG):
        kept, scores, report = filter_answers(answers, judge=Judge(settings, "eu"))
    assert kept == [answers[0]] and scores == [5]
    assert report.to_dict()["dropped"] == {"judge_below_threshold": 1, "judge_unparsed": 1}
    assert report.to_dict()["judge_scores"] == {"2": 1, "5": 1}
    request = FakeJudge.seen[0]
    assert request["auth"] == "Bearer sk-test-secret-123" and request["body"]["model"] == "grader"
    assert "written in Basque" in request["body"]["messages"][0]["content"]
    assert "sk-test-secret-123" not in caplog.text


def test_judge_errors_name_the_variable_never_the_key(judge_url, monkeypatch) -> None:
    settings = JudgeSettings(url=judge_url, model="grader", api_key_env="JUDGE_KEY")
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(LangadaptError, match="environment variable JUDGE_KEY, which is not set"):
        Judge(settings, "eu")
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong-key-456")
    with pytest.raises(LangadaptError) as error:
        Judge(settings, "eu").score("a", "b")
    assert "HTTP 401 — check the key in JUDGE_KEY" in str(error.value) and "sk-wrong" not in str(error.value)
