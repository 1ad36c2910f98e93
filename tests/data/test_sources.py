"""Reading sources: every format, streaming, skipped lines counted, one-line errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from langadapt.data.config import SourceConfig
from langadapt.data.sources import ReadStats, iter_documents
from langadapt.errors import LangadaptError


def read(path: Path | str, limit: int | None = None, **kwargs) -> tuple[list[str], ReadStats]:
    stats = ReadStats()
    docs = list(iter_documents(SourceConfig(path=str(path), **kwargs), "src", stats, limit))
    return docs, stats


def test_jsonl_gz_with_a_text_field(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"eu": "kaixo", "en": "hello"}\n\n{"eu": "agur", "en": "bye"}\n')
    assert read(path, text_field="eu")[0] == ["kaixo", "agur"]
    assert read(path, text_field="en", limit=1)[0] == ["hello"]


def test_invalid_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "bad \xff byte"}\nnot json\n{"other": 1}\n{"text": "two"}\n')
    docs, stats = read(path)
    assert docs == ["one", "two"]
    assert (stats.invalid_utf8, stats.invalid_json, stats.missing_field, stats.documents) == (1, 1, 1, 2)


def test_a_lone_surrogate_escape_is_invalid_json(tmp_path: Path) -> None:
    """`"\\ud800"` decodes to no UTF-8 text: counted as invalid, not carried on to crash a later write."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "half \\ud800 pair"}\n{"text": "pair \\ud83d\\ude00"}\n')
    docs, stats = read(path)
    assert docs == ["one", "pair \U0001f600"] and stats.invalid_json == 1


def test_missing_text_field_lists_the_fields_that_exist(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"body": "x", "id": 1}\n')
    with pytest.raises(LangadaptError, match=r"no field 'text' \(fields: body, id\)"):
        read(path)


def test_txt_one_document_per_line_or_per_paragraph(tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_text("first\nsecond\n")
    assert read(lines)[0] == ["first", "second"]
    paragraphs = tmp_path / "paras.txt"
    paragraphs.write_text("a1\na2\n\n\nb1\n")
    assert read(paragraphs)[0] == ["a1\na2", "b1"]


def test_parquet_and_datasets_folder(tmp_path: Path) -> None:
    from datasets import Dataset

    dataset = Dataset.from_dict({"text": ["x", "y"], "n": [1, 2]})
    dataset.to_parquet(tmp_path / "d.parquet")
    dataset.save_to_disk(tmp_path / "saved")
    assert read(tmp_path / "d.parquet")[0] == ["x", "y"]
    assert read(tmp_path / "saved")[0] == ["x", "y"]
    with pytest.raises(LangadaptError, match=r"no column 'body' \(columns: text, n\)"):
        read(tmp_path / "d.parquet", text_field="body")


def test_glob_patterns_and_missing_files(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"part-{i}.jsonl").write_text(json.dumps({"text": f"doc{i}"}) + "\n")
    assert read(tmp_path / "part-*.jsonl")[0] == ["doc0", "doc1", "doc2"]
    assert read(tmp_path)[0] == ["doc0", "doc1", "doc2"]  # a folder of files
    with pytest.raises(LangadaptError, match="no file matches"):
        read(tmp_path / "nothing-*.jsonl")


def test_hub_ids_are_recognised_and_fail_offline_in_one_line(tmp_path: Path) -> None:
    from langadapt.data.sources import is_hub_source

    assert is_hub_source(SourceConfig(path="uonlp/CulturaX", subset="lt"))
    assert not is_hub_source(SourceConfig(path=str(tmp_path)))
    assert is_hub_source(SourceConfig(path=str(tmp_path), format="hub"))
    with pytest.raises(LangadaptError, match=r"cannot stream hub dataset 'nobody-here/no-such-dataset'.*online"):
        read("nobody-here/no-such-dataset")
