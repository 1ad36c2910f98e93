"""The translation cache: one SQLite file, one row per translated segment, committed as each one arrives.

A segment's key hashes (backend identity, direction, segment text); the backend identity covers the backend
kind, the model, the prompt template and every generation setting that changes the output. So a re-run, a
run after `kill -9`, or a run with other filters never pays twice for a segment, and changing the model or
the prompt never reuses a stale translation. SQLite in WAL mode with a busy timeout lets several processes
(two runs, a run and the CLI) read and write one cache file safely.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.errors import LangadaptError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    direction TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def backend_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def segment_key(backend: str, direction: str, text: str) -> str:
    return hashlib.sha256(f"{backend}\x00{direction}\x00{text}".encode()).hexdigest()


class TranslationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise LangadaptError(
                f"cannot open the translation cache '{self.path}' ({exc}) — point translate.cache (or --cache) at "
                "a writable file, or remove a corrupt one"
            ) from None

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite caps the number of bound parameters
            chunk = unique[start : start + 500]
            rows = self._db.execute(
                f"SELECT key, target FROM segments WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            found.update(rows.fetchall())
        return found

    def put(self, key: str, backend: str, direction: str, source: str, target: str) -> None:
        """Store one translation and commit it (INSERT OR REPLACE: a concurrent writer of the same key wins)."""
        self._db.execute(
            "INSERT OR REPLACE INTO segments VALUES (?, ?, ?, ?, ?, ?)",
            (key, backend, direction, source, target, time.time()),
        )

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])

    def close(self) -> None:
        self._db.close()
