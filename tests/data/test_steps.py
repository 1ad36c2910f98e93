"""The pipeline steps' own plumbing: filters count per batch exactly what datatrove's `BaseFilter` counts per
document, also when the consumer stops mid-batch; the loguru lookup datatrove repeats per task is cached."""

from __future__ import annotations

import itertools

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from langadapt.data.steps import FILTER_BATCH, BatchCountingFilter


def verdict(doc: Document) -> bool | tuple[bool, str]:
    index = int(doc.id)
    if index % 3 == 0:
        return False, "three"
    return index % 7 != 0  # a multiple of 7 is dropped without a reason


class PerDocument(BaseFilter):
    name = "reference"

    def __init__(self) -> None:
        super().__init__(batch_size=FILTER_BATCH)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return verdict(doc)

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        return [verdict(doc) for doc in batch]


class PerBatch(BatchCountingFilter):
    name = "batched"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return verdict(doc)

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        return [verdict(doc) for doc in batch]


def documents(count: int) -> list[Document]:
    return [Document(text=f"text {i}", id=str(i)) for i in range(count)]


def counters(step: BaseFilter) -> dict[str, int]:
    """The document counters; not datatrove's per-document `doc_len` (the corpus writer counts what is kept)."""
    skipped = ("batches", "batch", "doc_len")
    return {key: int(value.total) for key, value in step.stats.stats.items() if key not in skipped}


def test_batch_counts_equal_datatrove_per_document_counts() -> None:
    count = 2 * FILTER_BATCH + 37
    reference, batched = PerDocument(), PerBatch()
    kept_reference = [doc.id for doc in reference.run(iter(documents(count)))]
    kept_batched = [doc.id for doc in batched.run(iter(documents(count)))]
    assert kept_batched == kept_reference
    expected = {"total": count, "forwarded": len(kept_reference), "dropped": count - len(kept_reference),
                "dropped_three": len(range(0, count, 3))}
    assert counters(batched) == counters(reference) == expected


def test_a_consumer_that_stops_mid_batch_is_counted_up_to_its_stop() -> None:
    reference, batched = PerDocument(), PerBatch()
    last = []
    for step in (reference, batched):
        stream = step.run(iter(documents(FILTER_BATCH + 10)))
        taken = list(itertools.islice(stream, 20))
        stream.close()  # what a writer that reached its quota does
        last.append(int(taken[-1].id))
    assert last[0] == last[1]
    assert counters(batched) == counters(reference)
    assert counters(batched)["total"] == last[0] + 1  # the documents up to the 20th kept one were judged


def test_the_loguru_library_lookup_is_computed_once_per_process() -> None:
    from loguru._better_exceptions import ExceptionFormatter

    import langadapt.data.engine  # noqa: F401  (importing the engine installs the cache)

    first = ExceptionFormatter._get_lib_dirs()
    assert ExceptionFormatter._get_lib_dirs() is first
    assert ExceptionFormatter._get_lib_dirs.cache_info().hits >= 1
