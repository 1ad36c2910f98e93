"""The sweep comparison table: one row per variant from its manifests, shared stages timed once."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from langadapt.report.html import load_run, render_report
from langadapt.report.variants import csv_text, load_comparison, markdown, variants_section, write_tables
from langadapt.runstore import write_json
from langadapt.sweep.store import SharedStages, VariantStore

BASE = {"eu bpc": 4.0, "en bpc": 1.5, "mc:translation loglik": 0.25}
CHILD = {"eu bpc": 3.9, "gen:brackets pattern_rate": 0.9}


def commit(store: VariantStore, stage: str, key: str, wall: float, metrics: dict) -> None:
    if store.completed(stage, key) is None:
        store.commit(stage, store.begin(stage, key), {"stage": stage, "wall_seconds": wall, "metrics": metrics,
                                                      "config_hash": "h", "inputs": {}}, key)


def fake_sweep(root: Path) -> Path:
    """Two vocabularies × two LEP methods; data shared by all, each vocab by two variants."""
    shared = SharedStages(root / ".shared")
    variants = []
    for vocab, ratio in (("extended", 2.1), ("optimized", 2.3)):
        for lep, bpc in (("swap", 2.5), ("conversion", 2.25)):
            name = f"vocab-{vocab}_lep-{lep}"
            variants.append({"name": name, "overrides": {"vocab.method": vocab, "lep.method": lep},
                             "labels": {"vocab.method": vocab, "lep.method": lep}})
            store = VariantStore(root / "variants" / name, shared)
            store.prepare()
            store.save_run_config({"name": name, "models": {"base": "builtin:x"}}, ["data", "vocab", "lep", "eval"])
            commit(store, "data", "d", 10.0, {})
            commit(store, "vocab", vocab, 4.0, {"summary": {"basque_dev ×chars/tok": ratio, "new tokens": 5}})
            commit(store, "lep", name, 3.0, {})
            final = {"eu bpc": bpc, "en bpc": 1.6, "mc:translation loglik": 0.5, "copy:sentences len": 0.75,
                     "gen words/s": 3.0, "gen:brackets pattern_rate": 0.85}
            interval = {"low": bpc - 0.125, "high": bpc + 0.125} if lep == "swap" else {}
            figures = {"lep": {"eu bpc": {"value": bpc, **interval}}}
            commit(store, "eval", name, 20.0, {"models": {"base": BASE, "instruct": CHILD, "lep": final},
                                               "figures": figures})
    write_json(root / "sweep.json", {"name": "eu", "keys": ["vocab.method", "lep.method"], "variants": variants})
    return root


def test_rows_hold_ratios_bpc_with_intervals_scores_and_walls_counting_shared_stages_once(tmp_path: Path) -> None:
    comparison = load_comparison(fake_sweep(tmp_path))
    first, last = comparison.rows[0], comparison.rows[3]
    assert [r.name for r in comparison.rows][:2] == ["vocab-extended_lep-swap", "vocab-extended_lep-conversion"]
    assert first.model == "lep" and first.ratios == {"basque_dev ×chars/tok": 2.1}
    assert first.bpc == {"eu bpc": (2.5, (2.375, 2.625)), "en bpc": (1.6, None)}
    assert first.scores == {"mc:translation loglik": 0.5, "copy:sentences len": 0.75,
                            "gen:brackets pattern_rate": 0.85}  # not gen words/s
    assert last.bpc["eu bpc"] == (2.25, None) and last.ratios == {"basque_dev ×chars/tok": 2.3}
    assert first.own_seconds == 3.0 + 20.0 and first.shared == ["data", "vocab"]
    assert comparison.seconds == 10 + 2 * 4 + 4 * 23 and comparison.unshared_seconds == 4 * (10 + 4 + 23)
    assert [r.name for r in comparison.references] == ["original (models.base)", "instruct sibling (models.instruct)"]
    assert comparison.references[1].scores == {"gen:brackets pattern_rate": 0.9}
    assert comparison.references[0].bpc["eu bpc"] == (4.0, None)


def test_markdown_csv_and_the_html_section(tmp_path: Path) -> None:
    root = fake_sweep(tmp_path)
    comparison = load_comparison(root)
    text = markdown(comparison)
    assert ("| variant | vocab.method | lep.method | model | basque_dev ×chars/tok | eu bpc | en bpc | "
            "mc:translation loglik | gen:brackets pattern_rate | copy:sentences len | wall | shared |") in text
    assert (
        "| vocab-extended_lep-swap | extended | swap | lep | 2.1 | 2.500 [2.375, 2.625] | 1.600 | 0.5 | 0.85 | 0.75 | "
        "23 s | data, vocab |" in text
    )
    assert "| original (models.base) |  |  | base |  | 4.000 | 1.500 | 0.25 |  |  |  |  |" in text
    assert "| instruct sibling (models.instruct) |  |  | instruct |  | 3.900 |  |  | 0.9 |  |  |  |" in text
    assert "stage time 110 s with shared stages counted once (148 s if each variant had made its own)" in text
    rows = list(csv.DictReader(io.StringIO(csv_text(comparison))))
    assert rows[1]["variant"] == "instruct sibling (models.instruct)" and rows[1]["wall_seconds"] == ""
    assert rows[2]["eu bpc low"] == "2.375" and rows[2]["wall_seconds"] == "23.0" and rows[3]["eu bpc low"] == ""

    run = root / "variants" / "vocab-optimized_lep-swap"
    section = variants_section(run)
    assert "<h2>Sweep variants</h2>" in section and "<td><b>vocab-optimized_lep-swap</b></td>" in section
    assert "<td><b>vocab-extended_lep-swap</b></td>" not in section
    assert variants_section(tmp_path) == ""
    assert "<h2>Sweep variants</h2>" in render_report(load_run(run))
    written = write_tables(root)
    assert [p.name for p in written] == ["variants.md", "variants.csv", "report.html"]
    assert 'href="variants/' not in (root / "report.html").read_text()  # no variant report rendered yet
    assert json.loads((root / "sweep.json").read_text())["name"] == "eu"
