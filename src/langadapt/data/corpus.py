"""The data stage's output files and how later stages read them.

`<run>/data/corpus/<source>.jsonl.gz` holds the cleaned training documents of each source and
`<run>/data/eval/<name>.jsonl.gz` the held-out evaluation texts, one `{"text": ...}` per line. The data
stage writes each as one gzip member per shard, concatenated in shard order (a valid gzip file); stages
read them with `read_texts` and never depend on the file format.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

CORPUS_DIR = "corpus"
EVAL_DIR = "eval"
GZIP_READ_BUFFER = 1 << 20


def open_gzip(path: Path) -> IO[bytes]:
    """A .gz file's bytes through a 1 MiB buffer: iterating `GzipFile`'s own lines costs ~1.5 µs a line in
    checks, a third of decompressing them."""
    return io.BufferedReader(gzip.GzipFile(path, "rb"), GZIP_READ_BUFFER)


def jsonl_lines(texts: Iterable[str]) -> bytes:
    """The corpus files' lines, one `{"text": ...}` per text (UTF-8, newline-terminated)."""
    return b"".join(orjson.dumps({"text": text}) + b"\n" for text in texts)


def corpus_file(data_dir: Path, source: str) -> Path:
    return Path(data_dir) / CORPUS_DIR / f"{source}.jsonl.gz"


def eval_file(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / EVAL_DIR / f"{name}.jsonl.gz"


class TextWriter:
    """Append documents to a corpus file. The gzip header carries no timestamp, so the same documents give
    the same bytes: the pack stage's tokenisation cache is keyed by the file's content hash."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.count = 0

    def __enter__(self) -> TextWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = self.path.open("wb")
        self._gzip = gzip.GzipFile(filename=self.path.name, fileobj=self._raw, mode="wb", compresslevel=3, mtime=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._gzip.close()
        self._raw.close()

    def write(self, text: str) -> None:
        self._gzip.write(jsonl_lines([text]))
        self.count += 1


def write_texts(path: Path, texts: Iterable[str]) -> int:
    with TextWriter(path) as writer:
        for text in texts:
            writer.write(text)
    return writer.count


def read_texts(path: Path) -> Iterator[str]:
    with open_gzip(path) as handle:
        for line in handle:
            yield orjson.loads(line)["text"]
