"""Helpers shared by the benchmark scripts in bench/.

Benchmarks are not tests: each script prints its figures and compares them against a baseline measured
in the same run (ratios, because machines here are noisy). Results go into docs/benchmarks.md together
with the command that produced them.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:  # run as `python bench/x.py` from a checkout without installing
    sys.path.insert(0, str(SRC))

# The real data of the three target languages, in a `shared/data` folder beside the checkout (or beside
# the folder holding a worktree); LANGADAPT_SHARED_DATA overrides.
_CANDIDATES = [parent / "shared" / "data" for parent in REPO.parents]
SHARED_DATA = Path(
    os.environ.get("LANGADAPT_SHARED_DATA")
    or next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0])
)
DEMO_DATA = REPO / "examples" / "data" / "eu"
# The parallel train files of the three target languages (a field per language: `eu`/`ru`/`lt` and `en`),
# and the out-of-domain UI strings of two of them.
TRAIN_FILES = {
    "eu": SHARED_DATA / "eu" / "libreoffice-help.en-eu.train.jsonl.gz",
    "ru": SHARED_DATA / "ru" / "libreoffice-help.en-ru.train.jsonl.gz",
    "lt": SHARED_DATA / "lt" / "ui-strings.en-lt.train.jsonl.gz",
}
OOD_FILES = {
    "eu": SHARED_DATA / "eu" / "ui-strings.en-eu.ood.jsonl.gz",
    "ru": SHARED_DATA / "ru" / "ui-strings.en-ru.ood.jsonl.gz",
}


@contextmanager
def timed(label: str, results: dict[str, float] | None = None) -> Iterator[None]:
    """Print (and optionally record) the wall-clock seconds of a block."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    if results is not None:
        results[label] = seconds
    print(f"{label}: {seconds:.3f} s", flush=True)


def iter_field(path: Path, field: str, limit: int | None = None) -> Iterator[str]:
    """`field` of each line of a gzipped JSON Lines file (the parallel corpora hold one field per language)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for count, line in enumerate(handle):
            if limit is not None and count >= limit:
                return
            yield json.loads(line)[field]


def read_field(path: Path, field: str, limit: int | None = None) -> list[str]:
    return list(iter_field(path, field, limit))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
