"""The runner: order, skipping, re-running what changed and everything downstream, crashes, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from langadapt import pipeline
from langadapt.config import validate_config
from langadapt.errors import LangadaptError
from langadapt.pipeline import Stage, StageContext, run_pipeline
from langadapt.runstore import RunStore
from langadapt.status import run_status
from tests.tiny import REPO


def make_config(tmp_path: Path, **extra) -> object:
    corpus = tmp_path / "corpus.jsonl"
    if not corpus.exists():
        corpus.write_text('{"text": "kaixo"}\n')
    data = {
        "name": "t", "output_dir": str(tmp_path / "run"), "target_language": "eu",
        "models": {"base": "builtin:smollm2-135m-instruct"},
        "data": {"sources": {"eu": {"path": str(corpus)}}},
        **extra,
    }
    return validate_config(data, base_dir=tmp_path)


class Recorder:
    """Fake stages that record what they saw and write one file each."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.contexts: dict[str, StageContext] = {}
        self.fail: set[str] = set()

    def stage(self, name: str):
        def fn(cfg, ctx: StageContext) -> dict:
            self.calls.append(name)
            self.contexts[name] = ctx
            (ctx.out / f"{name}.txt").write_text(",".join(sorted(ctx.inputs)))
            (ctx.work / "progress").write_text("half")
            if name in self.fail:
                raise RuntimeError(f"{name} exploded")
            return {"value": len(self.calls), "summary": {"n": len(self.calls)}}

        return fn


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    rec = Recorder()
    corpus_inputs = lambda cfg: [s.path for s in cfg.data.sources.values()]  # noqa: E731
    stages = {
        "data": Stage("data", rec.stage("data"), section="data", external_inputs=corpus_inputs),
        "vocab": Stage("vocab", rec.stage("vocab"), needs=("data",), section=None),
        "embed": Stage("embed", rec.stage("embed"), needs=("vocab",), after=("data",), section=None),
    }
    monkeypatch.setattr(pipeline, "registered_stages", lambda: stages)
    return rec


def test_stages_run_in_order_and_write_complete_manifests(tmp_path: Path, recorder: Recorder) -> None:
    cfg = make_config(tmp_path)
    results = run_pipeline(cfg)
    assert [r.name for r in results] == ["data", "vocab", "embed"] == recorder.calls
    run = tmp_path / "run"
    manifest = json.loads((run / "embed" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["stage"] == "embed"
    assert set(manifest["inputs"]) == {"stage:vocab", "stage:data"}
    assert {"torch", "transformers", "python", "langadapt"} <= set(manifest["versions"])
    assert manifest["metrics"]["value"] == 3 and manifest["wall_seconds"] >= 0
    assert (run / "embed" / "embed.txt").read_text() == "data,vocab"
    assert recorder.contexts["vocab"].out.name == f".tmp-vocab-{os.getpid()}"
    assert (run / "vocab" / "log.txt").exists()
    assert not list(run.glob(".tmp-*")) and not (run / ".work" / "vocab").exists()


def test_an_unchanged_rerun_skips_everything(tmp_path: Path, recorder: Recorder) -> None:
    cfg = make_config(tmp_path)
    run_pipeline(cfg)
    recorder.calls.clear()
    results = run_pipeline(cfg)
    assert recorder.calls == [] and [r.status for r in results] == ["skipped"] * 3


def test_a_changed_section_reruns_that_stage_and_everything_downstream(tmp_path: Path, recorder: Recorder) -> None:
    run_pipeline(make_config(tmp_path))
    recorder.calls.clear()
    cfg = make_config(tmp_path)
    cfg.data.sources["eu"].max_documents = 5
    run_pipeline(cfg)
    assert recorder.calls == ["data", "vocab", "embed"]


def test_a_changed_input_file_reruns_its_stage(tmp_path: Path, recorder: Recorder) -> None:
    cfg = make_config(tmp_path)
    run_pipeline(cfg)
    recorder.calls.clear()
    time.sleep(0.01)
    (tmp_path / "corpus.jsonl").write_text('{"text": "kaixo mundua"}\n')
    run_pipeline(cfg)
    assert recorder.calls == ["data", "vocab", "embed"]


def test_force_reruns_one_stage_and_what_depends_on_it(tmp_path: Path, recorder: Recorder) -> None:
    cfg = make_config(tmp_path)
    run_pipeline(cfg)
    recorder.calls.clear()
    run_pipeline(cfg, force=["vocab"])
    assert recorder.calls == ["vocab", "embed"]


def test_until_stops_after_the_named_stage(tmp_path: Path, recorder: Recorder) -> None:
    run_pipeline(make_config(tmp_path), until="vocab")
    assert recorder.calls == ["data", "vocab"]
    with pytest.raises(LangadaptError, match="not part of this run"):
        run_pipeline(make_config(tmp_path), until="sft")


def test_a_failing_stage_leaves_nothing_that_looks_complete(tmp_path: Path, recorder: Recorder) -> None:
    cfg = make_config(tmp_path)
    recorder.fail.add("vocab")
    with pytest.raises(RuntimeError, match="vocab exploded"):
        run_pipeline(cfg)
    run = tmp_path / "run"
    assert (run / "data" / "manifest.json").exists()
    assert not (run / "vocab").exists() and not list(run.glob(".tmp-*"))
    assert (run / ".work" / "vocab" / "progress").read_text() == "half"  # resumable scratch survives
    rows = {row["stage"]: row for row in run_status(run)}
    assert rows["data"]["status"] == "complete" and rows["data"]["metrics"] == {"n": 1}
    assert rows["vocab"]["status"] == "failed" and "vocab exploded" in rows["vocab"]["error"]
    assert rows["embed"]["status"] == "pending"

    recorder.fail.clear()
    recorder.calls.clear()
    run_pipeline(cfg)
    assert recorder.calls == ["vocab", "embed"]  # data was complete and unchanged
    assert [row["status"] for row in run_status(run)] == ["complete"] * 3


def test_every_pipeline_stage_is_registered_with_its_config_section() -> None:
    stages = pipeline.registered_stages()
    order = pipeline.pipeline_order()
    assert order == ["data", "vocab", "pack", "embed", "cpt", "lep", "translate", "sft", "dpo", "eval", "report"]
    assert all(item.section == name for name, item in stages.items())
    schema = pipeline.run_config_schema()
    assert all(name in schema.model_fields for name in stages)  # each stage brings its section
    # Every upstream a stage reads comes earlier in the pipeline.
    rank = {name: index for index, name in enumerate(order)}
    for name, item in stages.items():
        assert all(rank[upstream] < rank[name] for upstream in (*item.needs, *item.after) if upstream != "*"), name
        assert all(rank[downstream] > rank[name] for downstream in item.before), name


def test_a_stage_whose_upstream_is_disabled_is_refused(tmp_path: Path, monkeypatch) -> None:
    stages = {
        "data": Stage("data", lambda cfg, ctx: {}),
        "cpt": Stage("cpt", lambda cfg, ctx: {}, needs=("pack",), section=None),
    }
    monkeypatch.setattr(pipeline, "registered_stages", lambda: stages)
    with pytest.raises(LangadaptError, match="stage 'cpt' needs stage"):
        run_pipeline(make_config(tmp_path))


def test_a_cycle_of_stages_is_refused_in_one_line() -> None:
    stages = {
        "data": Stage("data", lambda cfg, ctx: {}),
        "vocab": Stage("vocab", lambda cfg, ctx: {}, needs=("data",), after=("cpt",)),
        "cpt": Stage("cpt", lambda cfg, ctx: {}, after=("vocab",)),
    }
    with pytest.raises(LangadaptError, match="the stages vocab, cpt wait for each other"):
        pipeline.stage_order(stages)


def test_before_and_consumes_place_a_stage_without_editing_the_others() -> None:
    stages = {
        "data": Stage("data", lambda cfg, ctx: {}),
        "sft": Stage("sft", lambda cfg, ctx: {}, needs=("data",), produces=("model",)),
        "eval": Stage("eval", lambda cfg, ctx: {}, needs=("data",), consumes=("model",)),
        "report": Stage("report", lambda cfg, ctx: {}, after=("*",)),
        "translate": Stage("translate", lambda cfg, ctx: {}, after=("data",), before=("sft",)),
        "merge": Stage("merge", lambda cfg, ctx: {}, after=("sft",), produces=("model",)),
    }
    assert pipeline.stage_order(stages) == ["data", "translate", "sft", "merge", "eval", "report"]


def test_a_configured_section_without_a_stage_is_refused(tmp_path: Path, monkeypatch) -> None:
    cfg = make_config(tmp_path, report={})
    monkeypatch.setattr(pipeline, "registered_stages", lambda: {"data": Stage("data", lambda cfg, ctx: {},
                                                                            section="data")})
    with pytest.raises(LangadaptError, match="has a 'report' section but no stage 'report' is registered"):
        pipeline.plan(cfg)


KILLABLE = textwrap.dedent(
    """
    import os, sys, time
    from langadapt import pipeline
    from langadapt.config import validate_config

    pipeline.registered_stages()  # import the real stages first, then replace 'data' with a slow one

    @pipeline.stage("data")
    def slow(cfg, ctx):
        (ctx.out / "part.txt").write_text("half-written")
        if os.environ.get("HANG"):
            print("ready", flush=True)
            time.sleep(600)
        return {"ok": 1}

    cfg = validate_config(
        {"name": "k", "output_dir": sys.argv[1], "target_language": "eu",
         "models": {"base": "builtin:smollm2-135m-instruct"},
         "data": {"sources": {"eu": {"path": sys.argv[2]}}}},
        base_dir=os.getcwd(),
    )
    pipeline.run_pipeline(cfg)
    """
)


def test_kill_9_mid_stage_then_rerun_completes_without_cleanup(tmp_path: Path) -> None:
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "a"}\n')
    run = tmp_path / "run"
    env = {**os.environ, "HANG": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(run), str(corpus)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    assert list(run.glob(".tmp-data-*"))  # mid-stage: only a temporary folder exists
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "data").exists()
    assert run_status(run)[0]["status"] == "interrupted"

    env.pop("HANG")
    subprocess.run([sys.executable, str(script), str(run), str(corpus)], env=env, check=True, capture_output=True)
    assert RunStore(run).manifest("data")["metrics"] == {"ok": 1}
    assert not list(run.glob(".tmp-*"))


def test_unhashed_keys_change_how_a_stage_runs_not_whether_it_reruns(tmp_path: Path, recorder: Recorder,
                                                                     monkeypatch) -> None:
    real = pipeline.registered_stages()  # the recorder's stages, with 'data' declaring its executor unhashed
    import dataclasses

    stages = {**real, "data": dataclasses.replace(real["data"], unhashed=("data.executor",))}
    monkeypatch.setattr(pipeline, "registered_stages", lambda: stages)
    run_pipeline(make_config(tmp_path))
    recorder.calls.clear()
    cfg = make_config(tmp_path, data={"sources": {"eu": {"path": str(tmp_path / "corpus.jsonl")}},
                                      "executor": {"workers": 7}})
    run_pipeline(cfg)
    assert recorder.calls == []
    cfg.data.sources["eu"].max_documents = 3
    run_pipeline(cfg)
    assert recorder.calls == ["data", "vocab", "embed"]


def test_sampling_token_counts_keeps_the_data_stage_up_to_date(tmp_path: Path) -> None:
    """`data.token_count_every` changes the manifest's counts, not the corpus: another k does not redo the stage,
    and (unhashed) the key leaves the hash of a run made before it existed as it was."""
    data = pipeline.registered_stages()["data"]
    cfg = make_config(tmp_path)
    exact = pipeline._config_hash(data, cfg)
    cfg.data.token_count_every = 16
    assert pipeline._config_hash(data, cfg) == exact
