"""The SQLite segment cache: lookups by key, and several processes writing one file at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from langadapt.translate.cache import TranslationCache, backend_key, segment_key


def test_keys_separate_backends_and_directions(tmp_path: Path) -> None:
    cache = TranslationCache(tmp_path / "c.sqlite")
    a, b = backend_key({"kind": "seq2seq", "model": "x"}), backend_key({"kind": "seq2seq", "model": "y"})
    assert a != b and backend_key({"model": "x", "kind": "seq2seq"}) == a
    keys = [segment_key(a, "en>eu", "Hello"), segment_key(a, "eu>en", "Hello"), segment_key(b, "en>eu", "Hello")]
    assert len(set(keys)) == 3
    cache.put(keys[0], a, "en>eu", "Hello", "Kaixo")
    assert cache.get_many(keys) == {keys[0]: "Kaixo"}
    cache.close()
    assert TranslationCache(tmp_path / "c.sqlite").get_many(keys) == {keys[0]: "Kaixo"}  # committed


def _write(path: str, worker: int, count: int) -> None:
    cache = TranslationCache(path)
    for i in range(count):
        cache.put(segment_key("b", "en>eu", f"{worker}-{i}"), "b", "en>eu", f"{worker}-{i}", f"t{worker}-{i}")
        cache.put(segment_key("b", "en>eu", f"shared-{i}"), "b", "en>eu", f"shared-{i}", f"s{i}")
    cache.close()


def test_concurrent_writers_are_safe(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    TranslationCache(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write, args=(path, w, 200)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    cache = TranslationCache(path)
    assert len(cache) == 3 * 200 + 200
    key = segment_key("b", "en>eu", "2-199")
    assert cache.get_many([key]) == {key: "t2-199"}
