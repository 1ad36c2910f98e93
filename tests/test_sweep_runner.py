"""Running a sweep: identical stages made once and linked, re-runs skip, changes re-run only what changed,
`--force` once per computation, a killed sweep resumes; variant folders read like any run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from langadapt import pipeline
from langadapt.pipeline import Stage, StageContext
from langadapt.runstore import RunStore
from langadapt.schema import Section
from langadapt.status import run_status, sweep_status
from langadapt.sweep.expand import load_sweep
from langadapt.sweep.runner import run_sweep
from tests.tiny import REPO


class KnobConfig(Section):
    level: int = 1


class Recorder:
    """Fake stages: each records (stage, variant) and writes what it read and its own level."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def stage(self, name: str):
        def fn(cfg, ctx: StageContext) -> dict:
            self.calls.append((name, Path(cfg.output_dir).name))
            level = getattr(cfg, name).level if name != "data" else 0
            seen = {n: (path / "out.txt").read_text() for n, path in ctx.inputs.items()}
            (ctx.out / "out.txt").write_text(json.dumps({"level": level, "inputs": seen}))
            (ctx.work / "scratch").write_text("x")
            return {"level": level, "summary": {"level": level}}

        return fn

    def report(self, cfg, ctx: StageContext) -> dict:
        """Like the real report, reads the sibling variants: how many have their embed stage complete."""
        self.calls.append(("report", Path(cfg.output_dir).name))
        siblings = [run for run in Path(cfg.output_dir).parent.iterdir() if RunStore(run).manifest("embed")]
        (ctx.out / "out.txt").write_text(str(len(siblings)))
        return {}

    def made(self, stage: str) -> list[str]:
        return [variant for name, variant in self.calls if name == stage]


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    stages = {
        "data": Stage("data", rec.stage("data"), section="data",
                      external_inputs=lambda cfg: [s.path for s in cfg.data.sources.values()]),
        "vocab": Stage("vocab", rec.stage("vocab"), needs=("data",), section="vocab", config=KnobConfig),
        "embed": Stage("embed", rec.stage("embed"), needs=("vocab",), section="embed", config=KnobConfig),
        "report": Stage("report", rec.report, after=("*",), section=None),
    }
    monkeypatch.setattr(pipeline, "registered_stages", lambda: stages)
    return rec


def write_config(tmp_path: Path, grid: dict) -> Path:
    corpus = tmp_path / "corpus.jsonl"
    if not corpus.exists():
        corpus.write_text('{"text": "kaixo"}\n')
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "output_dir": "out", "target_language": "eu",
        "models": {"base": "builtin:smollm2-135m-instruct"},
        "data": {"sources": {"eu": {"path": str(corpus)}}},
        "vocab": {}, "embed": {}, "sweep": {"grid": grid},
    }, sort_keys=False))
    return path


def sweep_of(tmp_path: Path, grid: dict):
    return load_sweep(write_config(tmp_path, grid))


GRID = {"vocab.level": [1, 2], "embed.level": [1, 2]}


def test_shared_upstream_stages_run_once_and_every_variant_reads_like_a_run(tmp_path: Path, recorder: Recorder) -> None:
    sweep = sweep_of(tmp_path, GRID)
    results = run_sweep(sweep)
    assert list(results) == ["vocab-1_embed-1", "vocab-1_embed-2", "vocab-2_embed-1", "vocab-2_embed-2"]
    assert recorder.made("data") == ["vocab-1_embed-1"]
    assert recorder.made("vocab") == ["vocab-1_embed-1", "vocab-2_embed-1"]
    assert len(recorder.made("embed")) == 4
    assert [r.status for r in results["vocab-2_embed-2"]] == ["skipped", "skipped", "ran", "ran"]
    # each report saw its siblings as they stood; those rendered before the last variant are rendered again
    assert recorder.made("report") == [*results, *list(results)[:3]]

    root = tmp_path / "out"
    run = root / "variants" / "vocab-2_embed-2"
    assert (run / "vocab").is_symlink() and not os.path.isabs(os.readlink(run / "vocab"))
    assert (run / "data").resolve() == (root / "variants" / "vocab-1_embed-1" / "data").resolve()
    assert (run / "vocab").resolve() != (root / "variants" / "vocab-1_embed-2" / "vocab").resolve()
    made = json.loads((run / "embed" / "out.txt").read_text())
    assert made["level"] == 2 and json.loads(made["inputs"]["vocab"])["level"] == 2  # its own vocab upstream
    assert RunStore(run).manifest("embed")["metrics"]["level"] == 2
    assert [row["status"] for row in run_status(run)] == ["complete"] * 4
    assert all((root / "variants" / v / "report" / "out.txt").read_text() == "4" for v in results)
    assert len(list((root / ".shared").glob("*/*"))) == 1 + 2 + 4 + 4
    assert not (root / ".shared" / ".work").exists() and not list(root.glob(".shared/*/.tmp-*"))

    rows = sweep_status(root)
    assert [(r["variant"], r["status"], r["stages"]) for r in rows][1] == ("vocab-1_embed-2", "complete", "4/4")
    assert rows[1]["overrides"] == {"vocab.level": "1", "embed.level": "2"}
    assert json.loads((root / "sweep.json").read_text())["keys"] == ["vocab.level", "embed.level"]
    assert (root / "variants.md").is_file() and (root / "report.html").is_file()

    recorder.calls.clear()
    again = run_sweep(sweep_of(tmp_path, GRID))
    assert recorder.calls == [] and {r.status for rs in again.values() for r in rs} == {"skipped"}


def test_a_changed_grid_makes_only_the_new_computations_and_prunes_the_old(tmp_path: Path, recorder: Recorder) -> None:
    run_sweep(sweep_of(tmp_path, GRID))
    recorder.calls.clear()
    run_sweep(sweep_of(tmp_path, {"vocab.level": [1, 2], "embed.level": [1, 3]}))
    assert recorder.made("embed") == ["vocab-1_embed-3", "vocab-2_embed-3"] and recorder.made("vocab") == []
    # the embed-2 variant folders are still there (and keep their entries); remove one and re-run
    root = tmp_path / "out"
    import shutil

    shutil.rmtree(root / "variants" / "vocab-1_embed-2")
    run_sweep(sweep_of(tmp_path, {"vocab.level": [1, 2], "embed.level": [1, 3]}))
    entries = {p.resolve() for p in (root / ".shared" / "embed").iterdir()}
    linked = {(root / "variants" / v / "embed").resolve() for v in os.listdir(root / "variants")}
    assert entries == linked and len(entries) == 5  # vocab-2_embed-2 still links its entry
    assert len(list((root / ".shared" / "report").iterdir())) == 5


def test_force_remakes_each_computation_once_then_the_others_link_it(tmp_path: Path, recorder: Recorder) -> None:
    run_sweep(sweep_of(tmp_path, GRID))
    before = (tmp_path / "out" / "variants" / "vocab-1_embed-2" / "vocab" / "manifest.json").read_text()
    recorder.calls.clear()
    run_sweep(sweep_of(tmp_path, GRID), force=["vocab"])
    assert recorder.made("vocab") == ["vocab-1_embed-1", "vocab-2_embed-1"]
    assert len(recorder.made("embed")) == 4 and recorder.made("data") == []
    after = (tmp_path / "out" / "variants" / "vocab-1_embed-2" / "vocab" / "manifest.json").read_text()
    assert json.loads(after)["fingerprint"] != json.loads(before)["fingerprint"]


def test_until_stops_every_variant_there(tmp_path: Path, recorder: Recorder) -> None:
    run_sweep(sweep_of(tmp_path, GRID), until="vocab")
    assert recorder.made("embed") == recorder.made("report") == [] and len(recorder.made("vocab")) == 2
    assert {r["status"] for r in sweep_status(tmp_path / "out")} == {"partial"}


KILLABLE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from langadapt import pipeline
    from langadapt.pipeline import Stage
    from langadapt.schema import Section
    from langadapt.sweep.expand import load_sweep
    from langadapt.sweep.runner import run_sweep

    class KnobConfig(Section):
        level: int = 1

    def fn(name):
        def run(cfg, ctx):
            level = getattr(cfg, name).level if name != "data" else 0
            with open(os.environ["CALLS"], "a") as log:
                log.write(f"{name} {Path(cfg.output_dir).name}\\n")
            (ctx.work / "step").write_text("1")
            if os.environ.get("HANG") and name == "embed" and level == 2:
                (ctx.out / "half").write_text("half-written")
                print("ready", flush=True)
                time.sleep(600)
            (ctx.out / "out.txt").write_text(str(level))
            return {"level": level}
        return run

    stages = {
        "data": Stage("data", fn("data"), section="data"),
        "vocab": Stage("vocab", fn("vocab"), needs=("data",), section="vocab", config=KnobConfig),
        "embed": Stage("embed", fn("embed"), needs=("vocab",), section="embed", config=KnobConfig),
    }
    pipeline.registered_stages = lambda: stages
    run_sweep(load_sweep(sys.argv[1]))
    """
)


def test_a_killed_sweep_resumes_without_redoing_what_completed(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"embed.level": [1, 2, 3]})
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "HANG": "1", "CALLS": str(calls), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, str(script), str(config)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    root = tmp_path / "out"
    assert [r["status"] for r in sweep_status(root)] == ["complete", "running", "pending"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [r["status"] for r in sweep_status(root)] == ["complete", "interrupted", "pending"]
    assert list(root.glob(".shared/embed/.tmp-*")) and list(root.glob(".shared/.work/embed/*/step"))

    env.pop("HANG")
    subprocess.run([sys.executable, str(script), str(config)], env=env, check=True, capture_output=True)
    assert calls.read_text().splitlines() == [
        "data embed-1", "vocab embed-1", "embed embed-1", "embed embed-2",  # killed here
        "embed embed-2", "embed embed-3"]  # the re-run: data and vocab were complete and shared
    assert [r["status"] for r in sweep_status(root)] == ["complete"] * 3
    assert (root / "variants" / "embed-2" / "embed" / "out.txt").read_text() == "2"
    assert not list(root.glob(".shared/*/.tmp-*")) and not (root / ".shared" / ".work").exists()
