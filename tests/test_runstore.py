"""The run store: atomic commits, leftovers from crashes, the exclusive lock, resumable work folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from langadapt.errors import LangadaptError
from langadapt.runstore import MANIFEST, RunStore, fingerprint_path, stable_hash


def test_commit_renames_the_temporary_folder_into_place(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    with store.locked():
        tmp = store.begin("data")
        assert tmp.name == f".tmp-data-{os.getpid()}"
        (tmp / "out.txt").write_text("x")
        assert store.manifest("data") is None
        store.commit("data", tmp, {"stage": "data", "metrics": {"n": 1}})
    assert not tmp.exists()
    assert (tmp_path / "run" / "data" / "out.txt").read_text() == "x"
    assert store.manifest("data")["status"] == "complete"


def test_recommit_replaces_the_old_folder_completely(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.locked():
        first = store.begin("data")
        (first / "old.txt").write_text("old")
        store.commit("data", first, {})
        second = store.begin("data")
        (second / "new.txt").write_text("new")
        store.commit("data", second, {})
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [MANIFEST, "new.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_leftovers_of_a_crashed_run_are_removed_when_the_store_is_opened(tmp_path: Path) -> None:
    (tmp_path / ".tmp-vocab-99999").mkdir()
    (tmp_path / ".old-data-99999").mkdir()
    (tmp_path / "keep").mkdir()
    with RunStore(tmp_path).locked():
        pass
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == ["keep"]


def test_a_manifest_without_complete_status_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / MANIFEST).write_text('{"status": "failed"}')
    assert RunStore(tmp_path).manifest("data") is None
    (tmp_path / "data" / MANIFEST).write_text('{"status": "comp')  # truncated
    assert RunStore(tmp_path).manifest("data") is None


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    with RunStore(tmp_path).locked():
        assert RunStore(tmp_path).is_locked()
        with pytest.raises(LangadaptError, match="another langadapt run is writing"), RunStore(tmp_path).locked():
            pass
    assert not RunStore(tmp_path).is_locked()


def test_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(LangadaptError, match="is a file"), RunStore(target).locked():
        pass


def test_work_dir_survives_for_the_same_key_and_is_wiped_for_another(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    work = store.work_dir("cpt", "key-a")
    (work / "checkpoint-10").mkdir()
    assert (store.work_dir("cpt", "key-a") / "checkpoint-10").exists()
    assert not (store.work_dir("cpt", "key-b") / "checkpoint-10").exists()


def test_commit_removes_the_work_dir(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.locked():
        store.work_dir("cpt", "k")
        store.commit("cpt", store.begin("cpt"), {})
    assert not (tmp_path / ".work" / "cpt").exists()


def test_fingerprints_follow_content_changes(tmp_path: Path) -> None:
    file = tmp_path / "a.txt"
    file.write_text("one")
    before = fingerprint_path(file)
    file.write_text("three")
    assert fingerprint_path(file) != before
    folder_before = fingerprint_path(tmp_path)
    (tmp_path / "b.txt").write_text("new")
    assert fingerprint_path(tmp_path) != folder_before
    assert fingerprint_path(tmp_path / "missing") == "missing"


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_events_are_logged_one_json_per_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.log_event("data", "started")
    store.log_event("data", "failed", error="boom")
    assert [e["event"] for e in store.events()] == ["started", "failed"]


def test_completed_means_this_exact_computation_and_leftover_links_go_too(tmp_path: Path) -> None:
    from langadapt.runstore import stage_key

    store = RunStore(tmp_path / "run")
    with store.locked():
        store.commit("vocab", store.begin("vocab"), {"config_hash": "h", "inputs": {"stage:data": "f"}})
    key = stage_key("h", {"stage:data": "f"})
    assert store.completed("vocab", key)["config_hash"] == "h"
    assert store.completed("vocab", stage_key("h", {"stage:data": "other"})) is None
    assert store.completed("vocab", key, force=True) is None
    (tmp_path / "run" / ".old-vocab-1").symlink_to(tmp_path / "run" / "vocab")  # a crash mid-swap in a sweep
    (tmp_path / "run" / ".tmp-link-x-1").symlink_to(tmp_path / "missing")
    with store.locked():
        pass
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "vocab"]
    assert store.manifest("vocab") is not None
