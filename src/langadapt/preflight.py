"""Whether the stage preflights read the run's input files.

`langadapt validate --no-files` checks a config written for another machine — the seed recipes in
examples/ name corpora and instruction sets that live where the GPUs are. Everything else is still checked
(schema, stage order, model references — a hub id by its form —, languages, mix shares, optimizer names,
copy-task languages, API keys); only the existence and first rows of input files are not. `langadapt run`
and a plain `validate` always read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_READ_INPUT_FILES: ContextVar[bool] = ContextVar("langadapt_read_input_files", default=True)


def input_files_checked() -> bool:
    return _READ_INPUT_FILES.get()


@contextmanager
def without_input_files() -> Iterator[None]:
    token = _READ_INPUT_FILES.set(False)
    try:
        yield
    finally:
        _READ_INPUT_FILES.reset(token)
