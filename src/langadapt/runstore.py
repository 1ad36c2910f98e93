"""The run store: one folder per stage under `output_dir`, each with a `manifest.json`.

Layout of a run folder::

    output_dir/
      run-config.json        the resolved config of the latest `langadapt run`
      run-log.jsonl          one event per line: stage started / completed / skipped / failed
      .lock                  held (flock) while a run is active; released by the kernel on any exit
      <stage>/               a complete stage: outputs + manifest.json (+ log.txt)
      .tmp-<stage>-<pid>/    a stage being written; renamed to <stage>/ only when complete
      .work/<stage>/         resumable scratch (e.g. training checkpoints); survives crashes

A stage folder either exists with a complete manifest or does not exist: it is written under a temporary
name and renamed into place, so a crash (even `kill -9`) never leaves a folder that looks complete.
Leftover temporary folders are removed the next time the store is opened for writing. In a sweep's variant
a stage folder is a link into the sweep's shared store (`langadapt.sweep.store.VariantStore`); readers
follow it like any folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError

MANIFEST = "manifest.json"
RUN_LOG = "run-log.jsonl"
RUN_CONFIG = "run-config.json"
WORK = ".work"

# Libraries whose versions go into every manifest (those installed; missing ones are skipped).
TRACKED_PACKAGES = (
    "langadapt", "torch", "transformers", "tokenizers", "datasets", "peft", "trl", "accelerate",
    "safetensors", "lm_eval",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file via a temp file + rename, so readers never see half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def stable_hash(data: Any) -> str:
    """Short sha256 of a JSON-serialisable value, independent of key order."""
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    import platform

    versions["python"] = platform.python_version()
    return versions


class RunStore:
    """Stage folders, manifests, atomic commits and the event log of one run folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock_handle: Any = None

    @classmethod
    def existing(cls, run_dir: str | Path) -> RunStore:
        """The store of a run folder that must already exist (for readers: status, report)."""
        store = cls(run_dir)
        if not store.root.is_dir():
            raise LangadaptError(f"'{run_dir}' is not a run folder — pass the output_dir of a run (e.g. runs/demo-eu)")
        return store

    # ----------------------------------------------------------------------------------------------------
    # Opening the store for writing.
    # ----------------------------------------------------------------------------------------------------

    def check_writable_location(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise LangadaptError(
                f"output_dir '{self.root}' is a file — point output_dir at a folder (it will be created)"
            )

    def prepare(self) -> None:
        self.check_writable_location()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LangadaptError(
                f"cannot create output_dir '{self.root}': {exc.strerror} — choose a writable location"
            ) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunStore]:
        """Hold the run folder exclusively; clean up whatever an earlier crashed run left behind."""
        self.prepare()
        handle = (self.root / ".lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise LangadaptError(
                f"another langadapt run is writing to '{self.root}' — wait for it to finish or use another "
                "output_dir"
            ) from None
        self._lock_handle = handle
        try:
            self.remove_leftovers()
            yield self
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            self._lock_handle = None

    def is_locked(self) -> bool:
        """True while some process holds the run folder (used by `status` to say 'running')."""
        lock = self.root / ".lock"
        if not lock.exists():
            return False
        with lock.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def remove_leftovers(self) -> list[str]:
        """Delete half-written stage folders (`.tmp-*`) and replaced ones (`.old-*`) from crashed runs."""
        return remove_leftovers(self.root)

    # ----------------------------------------------------------------------------------------------------
    # Stage folders.
    # ----------------------------------------------------------------------------------------------------

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest(self, stage: str) -> dict[str, Any] | None:
        """The manifest of a complete stage, or None when the stage has not completed."""
        return read_manifest(self.stage_dir(stage))

    def completed(self, stage: str, key: str, *, force: bool = False) -> dict[str, Any] | None:
        """The manifest of `stage` when its folder holds the computation `key` (see `stage_key`), else None.

        `force`: the caller wants it made again, so nothing counts as completed.
        """
        manifest = self.manifest(stage)
        if force or manifest is None or stage_key(manifest.get("config_hash"), manifest.get("inputs")) != key:
            return None
        return manifest

    def begin(self, stage: str, key: str = "") -> Path:
        """A fresh temporary folder for `stage` (`key`: the computation; a shared store files it by key)."""
        return fresh_dir(self.root / f".tmp-{stage}-{os.getpid()}")

    def commit(self, stage: str, tmp: Path, manifest: dict[str, Any], key: str = "") -> Path:
        """Write the manifest last, then swap the temporary folder into place."""
        final = commit_folder(tmp, self.stage_dir(stage), manifest)
        shutil.rmtree(self.root / WORK / stage, ignore_errors=True)
        return final

    def discard(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def work_dir(self, stage: str, key: str) -> Path:
        """Scratch space that survives a crash, for stages that resume (e.g. training checkpoints).

        It is tied to `key` (the stage's config and input fingerprint): when the key changes, whatever
        was there belongs to a different computation and is wiped.
        """
        return keyed_dir(self.root / WORK / stage, key)

    # ----------------------------------------------------------------------------------------------------
    # Run-level records.
    # ----------------------------------------------------------------------------------------------------

    def log_event(self, stage: str, event: str, **details: Any) -> None:
        record = {"time": now_iso(), "stage": stage, "event": event, "pid": os.getpid(), **details}
        with (self.root / RUN_LOG).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.root / RUN_LOG
        if not path.exists():
            return []
        events = []
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                events.append(json.loads(line))
        return events

    def save_run_config(self, config: dict[str, Any], stages: list[str]) -> None:
        write_json(self.root / RUN_CONFIG, {"stages": stages, "config": config, "saved_at": now_iso()})

    def run_config(self) -> dict[str, Any] | None:
        path = self.root / RUN_CONFIG
        return read_json(path) if path.exists() else None


def stage_key(config_hash: Any, inputs: Any) -> str:
    """The one key of a stage's computation: its config hash and its input fingerprints."""
    return stable_hash([config_hash, inputs])


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete stage folder, or None (absent, unreadable or not complete)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("status") == "complete" else None


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def commit_folder(tmp: Path, final: Path, manifest: dict[str, Any]) -> Path:
    """Write `manifest` (complete) into `tmp` last, then swap `tmp` into place as `final`."""
    write_json(tmp / MANIFEST, {**manifest, "status": "complete"})
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.is_symlink() or final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    _remove(old)
    return final


def remove_leftovers(folder: Path) -> list[str]:
    """Delete half-written (`.tmp-*`) and replaced (`.old-*`) folders or links that a crash left in `folder`."""
    removed = []
    for path in folder.iterdir():
        if path.name.startswith((".tmp-", ".old-")) and (path.is_symlink() or path.is_dir()):
            _remove(path)
            removed.append(path.name)
    return removed


def _remove(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def keyed_dir(path: str | Path, key: str) -> Path:
    """A folder whose content belongs to the computation named `key`; wiped when `key` changes.

    Used for resumable scratch (checkpoints): a re-run with the same key finds what the last attempt left.
    """
    path = Path(path)
    key_file = path / "KEY"
    if path.exists() and (not key_file.exists() or key_file.read_text().strip() != key):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    return path


def fingerprint_path(path: str | Path) -> str:
    """Cheap content fingerprint of a file or folder: names, sizes and modification times.

    Hashing gigabytes of corpus or weights on every run would cost more than the stages it guards;
    size + mtime is what make and datatrove use and catches every edit that goes through the filesystem.
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_file():
        stat = path.stat()
        return stable_hash([path.name, stat.st_size, stat.st_mtime_ns])
    entries = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        entries.append([str(file.relative_to(path)), stat.st_size, stat.st_mtime_ns])
    return stable_hash(entries)


@contextlib.contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """A temporary folder beside `out` that becomes `out` only if the block completes.

    For CLI verbs with `--out DIR`: DIR must not exist yet (or be empty); a failure leaves nothing behind.
    """
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LangadaptError(f"--out '{out}' already exists — choose a new folder or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Timer:
    """Wall-clock seconds of a block, for manifests."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.started_at = now_iso()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self.ended_at = now_iso()
