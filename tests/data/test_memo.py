"""The per-text memo: one computation per distinct key, bounded memory."""

from __future__ import annotations

from langadapt.data.memo import Memo


def test_each_distinct_key_is_computed_once_and_none_is_an_answer() -> None:
    calls: list[str] = []

    def judge(text: str) -> str | None:
        calls.append(text)
        return None if text == "ok" else text.upper()

    memo = Memo(judge)
    assert [memo(t) for t in ["ok", "bad", "ok", "bad", "ok"]] == [None, "BAD", None, "BAD", None]
    assert calls == ["ok", "bad"]


def test_a_full_memo_forgets_everything_and_starts_again() -> None:
    calls: list[int] = []
    memo = Memo(lambda k: calls.append(k) or k * 2, limit=2)
    assert [memo(k) for k in [1, 2, 1, 3, 1, 2]] == [2, 4, 2, 6, 2, 4]
    assert calls == [1, 2, 3, 1, 2]  # 3 found it full: 1 and 2 are computed again
    assert len(memo._answers) <= 2


def test_batch_use_stores_what_is_missing_and_forgets_before_passing_the_limit() -> None:
    memo: Memo[str, int] = Memo(limit=4)
    assert memo.missing(["a", "b", "a", "c"]) == ["a", "b", "c"]  # distinct, first-seen order
    for key in ("a", "b", "c"):
        memo.store(key, len(key))
    assert memo.missing(["c", "a"]) == [] and memo["a"] == 1
    assert memo.missing(["a", "d"]) == ["d"]  # 3 + 1 fits the limit
    memo.store("d", 1)
    assert memo.missing(["a", "e"]) == ["a", "e"]  # 4 + 1 would not: all forgotten, both missing
    assert len(memo._answers) == 0
