"""Instruction data file formats and their errors: every format becomes conversations or preference pairs."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from langadapt.data.instruct import PreferencePair, load_conversations, load_preferences, load_prompts
from langadapt.errors import LangadaptError


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
    sharegpt.write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "Bai?"}, {"from": "gpt", "value": "Ez."}]}])
    )
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
    ([{"question": "a", "answer": "b"}, {"instruction": "c", "output": "d"}],
     "bad.jsonl:2: a alpaca row in a qa file"),
    ([{"messages": [{"role": "tool", "content": "x"}]}], "unknown role 'tool'"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}],
     "this is a preference file — preference files belong under dpo.data"),
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
        {"prompt": "Kaixo", "chosen": [user("Kaixo"), assistant("Kaixo!")],
         "rejected": [user("Kaixo"), assistant("Hi!")]},
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
