"""The sweep's stage folders: made once per computation, shared by every variant that needs it.

A stage's computation is named by its key (`runstore.stage_key`: config hash + input fingerprints). Stage
folders live in a content-addressed store, `<output_dir>/.shared/<stage>/<key>/`, and a variant's stage
folder is a relative symlink to one of them, so `ctx.inputs`, `RunStore.manifest`, `langadapt status` and the
report read a variant like any run. Two variants whose stage has the same config and the same upstream
folders get the same key, hence the same folder: the first to reach it makes it, the others link it. An
entry is complete (manifest last, renamed into place) or absent, so a killed sweep resumes where it stopped;
training scratch lives in `.shared/.work/<stage>/<key>/` for the same reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from langadapt.runstore import (
    WORK,
    RunStore,
    commit_folder,
    fresh_dir,
    keyed_dir,
    read_manifest,
    remove_leftovers,
)

SHARED = ".shared"
SWEEP_FILE = "sweep.json"


def is_sweep(folder: str | Path) -> bool:
    return (Path(folder) / SWEEP_FILE).is_file()


class SharedStages:
    """`<sweep>/.shared/`: one folder per (stage, key); remembers what it made during this sweep."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.made: set[tuple[str, str]] = set()

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def manifest(self, stage: str, key: str) -> dict[str, Any] | None:
        return read_manifest(self.entry(stage, key))

    def begin(self, stage: str, key: str) -> Path:
        return fresh_dir(self.root / stage / f".tmp-{key}-{os.getpid()}")

    def commit(self, stage: str, key: str, tmp: Path, manifest: dict[str, Any]) -> Path:
        entry = commit_folder(tmp, self.entry(stage, key), manifest)
        shutil.rmtree(self.root / WORK / stage / key, ignore_errors=True)
        self.made.add((stage, key))
        return entry

    def work_dir(self, stage: str, key: str) -> Path:
        return keyed_dir(self.root / WORK / stage / key, key)

    def remove_leftovers(self) -> None:
        """Half-written entries of a killed sweep (their scratch in `.work` is kept for the resume)."""
        if self.root.is_dir():
            for stage in self.root.iterdir():
                if stage.is_dir() and stage.name != WORK:
                    remove_leftovers(stage)

    def prune(self, runs: list[Path]) -> list[str]:
        """Remove entries no variant folder under `runs` links to, and scratch of computations not finished
        (called after a complete sweep: what is left over belongs to configs no longer swept)."""
        linked = {link.resolve() for run in runs if run.is_dir() for link in run.iterdir() if link.is_symlink()}
        removed = []
        for stage in sorted(p for p in self.root.glob("*") if p.is_dir() and p.name != WORK):
            for entry in stage.iterdir():
                if entry.resolve() not in linked:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(f"{stage.name}/{entry.name}")
        shutil.rmtree(self.root / WORK, ignore_errors=True)
        return removed


class VariantStore(RunStore):
    """A variant's run folder whose stage folders are links into the sweep's `SharedStages`."""

    def __init__(self, root: str | Path, shared: SharedStages):
        super().__init__(root)
        self.shared = shared

    def completed(self, stage: str, key: str, *, force: bool = False) -> dict[str, Any] | None:
        """The shared entry of `key`, linked into place; forced: only one made during this sweep."""
        manifest = self.shared.manifest(stage, key)
        if manifest is None or (force and (stage, key) not in self.shared.made):
            return None
        self._link(stage, key)
        return manifest

    def begin(self, stage: str, key: str = "") -> Path:
        return self.shared.begin(stage, _required(key))

    def commit(self, stage: str, tmp: Path, manifest: dict[str, Any], key: str = "") -> Path:
        self.shared.commit(stage, _required(key), tmp, manifest)
        return self._link(stage, key)

    def work_dir(self, stage: str, key: str) -> Path:
        return self.shared.work_dir(stage, key)

    def _link(self, stage: str, key: str) -> Path:
        """Point `<variant>/<stage>` at the entry (a relative link: the sweep folder can be moved whole)."""
        link = self.stage_dir(stage)
        target = os.path.relpath(self.shared.entry(stage, key), self.root)
        if link.is_symlink() and os.readlink(link) == target:
            return link
        tmp = self.root / f".tmp-link-{stage}-{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(target, target_is_directory=True)
        if link.exists() and not link.is_symlink():  # a real folder (a plain run used this output_dir)
            os.replace(link, self.root / f".old-{stage}-{os.getpid()}")
            shutil.rmtree(self.root / f".old-{stage}-{os.getpid()}", ignore_errors=True)
        os.replace(tmp, link)  # atomic: readers see the old entry or the new one
        return link


def _required(key: str) -> str:
    if not key:
        raise ValueError("a shared stage folder is filed by its key")
    return key
