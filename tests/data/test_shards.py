"""Sharding: any cut of a file reads back exactly its documents, in order; the plan ignores worker counts."""

from __future__ import annotations

import gzip
import json
from itertools import chain
from pathlib import Path

import pytest

from langadapt.data import shards, sources
from langadapt.data.config import DataConfig, SourceConfig
from langadapt.data.shards import (
    BYTES_PER_DOCUMENT,
    Part,
    PartSize,
    costliest_first,
    part_size,
    piece_cost,
    plan_shards,
    split_part,
)
from langadapt.data.sources import ReadStats, iter_documents, read_part


def write_jsonl(path: Path, texts: list[str]) -> Path:
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    path.write_bytes(gzip.compress(lines, mtime=0) if path.name.endswith(".gz") else lines)
    return path


def read_pieces(pieces: list[Part], source: SourceConfig) -> list[str]:
    return [text for part in pieces for text in read_part(part, source, "src", ReadStats())]


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz", "docs.txt"])
@pytest.mark.parametrize("pieces", [1, 2, 7, 50])
def test_byte_ranges_read_every_document_once(tmp_path: Path, basque_texts: list[str], name: str, pieces: int) -> None:
    texts = [t.replace("\n", " ") for t in basque_texts[:300]]
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    else:
        write_jsonl(path, texts)
    source = SourceConfig(path=str(path))
    size = len(gzip.decompress(path.read_bytes())) if name.endswith(".gz") else path.stat().st_size
    whole = Part(str(path), "txt" if name.endswith(".txt") else "jsonl")
    parts = split_part(whole, size, size / pieces)
    assert len(parts) == pieces and parts[-1].end is None and [p.first for p in parts].count(True) == 1
    assert read_pieces(parts, source) == texts == list(iter_documents(source))


def test_paragraph_text_files_are_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "paras.txt"
    path.write_text("a1\na2\n\nb1\n\nc1\nc2\n")
    (part,) = split_part(Part(str(path), "txt"), path.stat().st_size, 2)
    assert read_pieces([part], SourceConfig(path=str(path))) == ["a1\na2", "b1", "c1\nc2"]


def test_a_document_with_a_bad_line_is_counted_not_mangled(tmp_path: Path) -> None:
    path = tmp_path / "paras.txt"
    path.write_bytes(b"good one\nstill good\n\nbad \xff line\nrest of it\n\nlast\n")
    stats = ReadStats()
    assert list(iter_documents(SourceConfig(path=str(path)), "src", stats)) == ["good one\nstill good", "last"]
    assert (stats.invalid_utf8, stats.documents) == (1, 2)


def test_parquet_is_cut_by_row_groups(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [f"testua {i}" for i in range(100)]
    pq.write_table(pa.table({"text": texts}), tmp_path / "d.parquet", row_group_size=10)
    whole = Part(str(tmp_path / "d.parquet"), "parquet")
    parts = split_part(whole, 1000, 300)
    assert 2 < len(parts) <= 10 and read_pieces(parts, SourceConfig(path=str(tmp_path / "d.parquet"))) == texts
    size = part_size(whole, "text", "src")
    assert (size.documents, size.units) == (100, 10)  # rows; row groups, what a parquet piece's start/end count
    assert sum(piece_cost(part, size) for part in parts) == pytest.approx(size.cost)


def test_plan_order_and_capped_sources(tmp_path: Path, basque_texts: list[str]) -> None:
    for i in range(3):
        write_jsonl(tmp_path / f"part-{i}.jsonl", basque_texts[i * 200 : (i + 1) * 200])
    write_jsonl(tmp_path / "dev.jsonl", basque_texts[600:650])
    cfg = DataConfig(
        sources={"big": {"path": str(tmp_path / "part-*.jsonl")},
                 "capped": {"path": str(tmp_path / "part-*.jsonl"), "max_documents": 10}},
        eval_sources={"dev": {"path": str(tmp_path / "dev.jsonl")}},
    )
    plan = plan_shards(cfg, shard_mb=0.01)
    assert [s.index for s in plan] == list(range(len(plan)))
    assert plan[0].source == "dev" and plan[0].eval  # eval texts first: they win every duplicate cluster
    big = [s for s in plan if s.source == "big"]
    assert len(big) > 3 and all(len(s.parts) == 1 for s in big)
    (capped,) = [s for s in plan if s.source == "capped"]
    assert len(capped.parts) == 3 and capped.stop_after == 10  # one reader, in order, that stops early
    assert plan_shards(cfg, shard_mb=0.01) == plan


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.jsonl.gz", "docs.txt"])
def test_part_size_counts_bytes_and_documents(tmp_path: Path, basque_texts: list[str], name: str) -> None:
    texts = [t.replace("\n", " ") for t in basque_texts[:300]]
    path = tmp_path / name
    if name.endswith(".txt"):
        path.write_text("\n".join(texts), encoding="utf-8")  # no newline after the last line: still a line
    else:
        write_jsonl(path, texts)
    raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    size = part_size(Part(str(path), "jsonl"), "text", "src")
    assert size == PartSize(len(raw), 300, len(raw)) and size.cost == 300 + len(raw) / BYTES_PER_DOCUMENT


def test_a_large_file_is_sized_from_its_first_bytes(
    tmp_path: Path, basque_texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [t.replace("\n", " ") for t in basque_texts[:2000]]
    path = write_jsonl(tmp_path / "big.jsonl", texts * 4)
    monkeypatch.setattr(shards, "_PROBE", 65_536)
    monkeypatch.setattr(shards, "_READ", 65_536)  # one read: a tenth of the file
    whole = path.stat().st_size
    assert whole > 10 * 65_536
    size = part_size(Part(str(path), "jsonl"), "text", "src")
    assert size.bytes == pytest.approx(whole, rel=1e-6) and size.documents == pytest.approx(8000, rel=0.2)
    assert size.documents != 8000  # estimated from the first read, not counted


def test_shard_costs_split_their_file_and_dense_shards_go_first(tmp_path: Path, basque_texts: list[str]) -> None:
    long = [t for t in basque_texts if len(t) > 200][:300]
    write_jsonl(tmp_path / "long.jsonl", long)
    write_jsonl(tmp_path / "short.jsonl", [f"Lerroa {i}" for i in range(6000)])  # many short documents
    write_jsonl(tmp_path / "dev.jsonl", long[:20])
    cfg = DataConfig(sources={"long": {"path": str(tmp_path / "long.jsonl")},
                              "short": {"path": str(tmp_path / "short.jsonl")}},
                     eval_sources={"dev": {"path": str(tmp_path / "dev.jsonl")}})
    plan = plan_shards(cfg, shard_mb=0.03)
    for source in ("long", "short"):
        whole = part_size(Part(str(tmp_path / f"{source}.jsonl"), "jsonl"), "text", source)
        assert sum(s.cost for s in plan if s.source == source) == pytest.approx(whole.cost)
    order = costliest_first(plan)
    assert sorted(order) == list(range(len(plan)))
    rounded = [float(f"{plan[r].cost:.3g}") for r in order]  # costs are compared to 3 significant digits
    assert rounded == sorted(rounded, reverse=True)
    assert plan[order[0]].source == "short" and plan[order[-1]].source == "dev"
    for source in ("long", "short"):  # a file's equal pieces (spans a byte apart) stay in reading order
        pieces = [r for r in order if plan[r].source == source]
        assert len(pieces) > 2 and pieces == sorted(pieces)
    assert [s.index for s in plan] == list(range(len(plan)))  # the plan itself stays in reading order


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file `sources` opens to read lines, in order (and no reader parked from an earlier test)."""
    calls: list[str] = []
    real = sources.open_binary

    def spy(path: Path):
        calls.append(Path(path).name)
        return real(path)

    sources.close_parked_readers()
    monkeypatch.setattr(sources, "open_binary", spy)
    return calls


def gz_pieces(path: Path, texts: list[str], pieces: int) -> list[Part]:
    write_jsonl(path, texts)
    size = len(gzip.decompress(path.read_bytes()))
    return split_part(Part(str(path), "jsonl"), size, size / pieces)


def test_a_gz_file_read_piece_after_piece_is_decompressed_once(
    tmp_path: Path, basque_texts: list[str], opened: list[str]
) -> None:
    texts = [t.replace("\n", " ") for t in basque_texts[:400]]
    a = gz_pieces(tmp_path / "a.jsonl.gz", texts, 9)
    b = gz_pieces(tmp_path / "b.jsonl.gz", texts[::-1], 5)
    source = SourceConfig(path=str(tmp_path / "a.jsonl.gz"))
    alone = {}
    for piece in a + b:  # each piece read on its own: a fresh reader seeks (decompresses) up to its start
        sources.close_parked_readers()
        alone[piece] = read_pieces([piece], source)
    assert len(opened) == 14 and list(chain.from_iterable(alone[p] for p in a)) == texts
    opened.clear()
    turns = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], *a[5:]]
    assert [read_pieces([piece], source) for piece in turns] == [alone[piece] for piece in turns]
    assert opened == ["a.jsonl.gz", "b.jsonl.gz"]  # two files in turn, piece after piece: each opened once
    opened.clear()
    assert [read_pieces([piece], source) for piece in (a[1], a[4], a[3])] == [alone[a[1]], alone[a[4]], alone[a[3]]]
    assert opened == ["a.jsonl.gz", "a.jsonl.gz"]  # a gap is read past; going back reopens the file


def test_a_piece_left_half_read_is_not_resumed(tmp_path: Path, basque_texts: list[str], opened: list[str]) -> None:
    texts = [t.replace("\n", " ") for t in basque_texts[:300]]
    pieces = gz_pieces(tmp_path / "a.jsonl.gz", texts, 4)
    source = SourceConfig(path=str(tmp_path / "a.jsonl.gz"))
    reader = read_part(pieces[0], source, "src", ReadStats())
    first = [next(reader), next(reader)]
    reader.close()  # a capped shard stops early
    assert first == texts[:2]
    assert read_pieces(pieces[1:], source) == texts[len(read_pieces([pieces[0]], source)):]
    assert opened == ["a.jsonl.gz", "a.jsonl.gz", "a.jsonl.gz"]  # half of 0; 1-3 with one reader; 0 again


def test_a_file_rewritten_after_its_reader_parked_is_read_afresh(
    tmp_path: Path, basque_texts: list[str], opened: list[str]
) -> None:
    old = [t.replace("\n", " ") for t in basque_texts[:300]]
    new = [t.upper() for t in old]
    path, source = tmp_path / "a.jsonl.gz", SourceConfig(path=str(tmp_path / "a.jsonl.gz"))
    pieces = gz_pieces(path, new, 3)
    expected = read_pieces([pieces[1]], source)  # piece 1 of the new file
    sources.close_parked_readers()
    assert gz_pieces(path, old, 3) == pieces  # the same decompressed size: the same pieces
    read_pieces([pieces[0]], source)  # parks a reader of the old file at pieces[1]
    gz_pieces(path, new, 3)  # rewritten in place
    opened.clear()
    assert read_pieces([pieces[1]], source) == expected and all(t == t.upper() for t in expected)
    assert opened == ["a.jsonl.gz"]  # reopened: the reader parked on the old file was not trusted


def test_a_forked_child_does_not_share_a_parked_reader(tmp_path: Path, basque_texts: list[str]) -> None:
    import multiprocessing

    texts = [t.replace("\n", " ") for t in basque_texts[:300]]
    pieces = gz_pieces(tmp_path / "a.jsonl.gz", texts, 3)
    source = SourceConfig(path=str(tmp_path / "a.jsonl.gz"))
    expected = [read_pieces([piece], source) for piece in pieces]
    assert read_pieces([pieces[0]], source) == expected[0]  # parks the parent's reader at pieces[1]
    assert str(pieces[0].path) in sources._PARKED
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_child_reads, (pieces[1], source)) == (expected[1], False)
    assert read_pieces([pieces[1]], source) == expected[1]  # the parent's reader was not moved by the child


def _child_reads(piece: Part, source: SourceConfig) -> tuple[list[str], bool]:
    parked_at_start = bool(sources._PARKED)
    return read_pieces([piece], source), parked_at_start
