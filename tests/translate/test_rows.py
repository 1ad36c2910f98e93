"""Format-aware fields: each format's texts are found, replaced in place, and rows missing a field are problems."""

from __future__ import annotations

import pytest

from langadapt.data.instruct import load_conversations, load_preferences
from langadapt.translate.rows import RowProblem, row_format, text_fields, with_texts
from tests.data.test_instruct import write_jsonl


def upper(record: dict, fmt: str, keep_system: bool = False) -> dict:
    fields = text_fields(record, fmt, "t:1", keep_system=keep_system)
    return with_texts(record, {path: text.upper() for path, text in fields})


def test_alpaca_fields_and_system_prompts() -> None:
    row = {"instruction": "Say hi", "input": "", "output": "Hi", "system": "Be brief"}
    assert upper(row, "alpaca") == {"instruction": "SAY HI", "input": "", "output": "HI", "system": "BE BRIEF"}
    assert upper(row, "alpaca", keep_system=True)["system"] == "Be brief"
    assert row["instruction"] == "Say hi"  # the source row is not touched


def test_sharegpt_chat_keeps_its_keys_and_roles() -> None:
    row = {"conversations": [{"from": "system", "value": "sys"}, {"from": "human", "value": "q"},
                             {"from": "gpt", "value": "a"}], "id": 7}
    assert upper(row, "chat", keep_system=True) == {
        "conversations": [{"from": "system", "value": "sys"}, {"from": "human", "value": "Q"},
                          {"from": "gpt", "value": "A"}], "id": 7}


def test_preference_lists_share_one_prompt_text() -> None:
    prompt = {"role": "user", "content": "Which is better?"}
    row = {"chosen": [prompt, {"role": "assistant", "content": "This"}],
           "rejected": [prompt, {"role": "assistant", "content": "That"}]}
    fields = text_fields(row, "preference", "t:1", keep_system=False)
    assert [text for _, text in fields] == ["Which is better?", "This", "Which is better?", "That"]
    assert upper(row, "preference")["rejected"][0]["content"] == "WHICH IS BETTER?"


def test_translated_rows_load_like_their_sources(tmp_path) -> None:
    chat = write_jsonl(
        tmp_path / "chat.jsonl",
        [upper({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "chat")],
    )
    prefs = write_jsonl(tmp_path / "p.jsonl", [upper({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference")])
    qa = write_jsonl(tmp_path / "qa.jsonl", [upper({"question": "q", "answer": "a"}, "qa")])
    assert (
        load_conversations([chat, qa])[0]
        == [[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]] * 2
    )
    assert load_preferences([prefs])[0][0].chosen == "C"


@pytest.mark.parametrize("row", [
    {"instruction": "only an instruction"},
    {"instruction": "x", "output": 3},
    {"messages": [{"role": "wizard", "content": "x"}]},
    {"chosen": "c", "rejected": "r"},
    "not an object",
])
def test_rows_missing_a_field_are_row_problems(row: object) -> None:
    with pytest.raises(RowProblem, match="missing_field"):
        fmt = row_format(row, "t:2", None if isinstance(row, str) or "chosen" in row or "messages" in row else "alpaca")
        text_fields(row, fmt, "t:2", keep_system=False)  # type: ignore[arg-type]
