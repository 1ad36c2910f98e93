"""Executors: a crashed worker fails the stage and a re-run resumes; the same config on Slurm (simulated
with stand-in sbatch/srun/scontrol/squeue that run the array tasks here) and on Ray gives the same corpus."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import pytest
from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from langadapt.data.config import DataConfig
from langadapt.data.corpus import corpus_file, read_texts
from langadapt.data.engine import ForkingExecutor
from langadapt.data.ingest import WORK_LAYOUT, ingest_corpus
from langadapt.data.steps import Normalizer
from langadapt.errors import LangadaptError

MARKER = "Hau da prozesua hiltzen duen testua"


def corpus(tmp_path: Path, basque_texts: list[str], executor: dict) -> DataConfig:
    path = tmp_path / "eu.jsonl"
    texts = [*basque_texts[:1500], MARKER + " eta beste hitz batzuk.", *basque_texts[1500:1600]]
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return DataConfig(sources={"eu": {"path": str(path), "language": "eu"}},
                      executor={"shard_mb": 0.03, **executor})


def run(cfg: DataConfig, out: Path, work: Path) -> dict:
    return ingest_corpus(cfg, seed=1, target_language="eu", tokenizer=None, out=out, work=work)


def test_a_killed_worker_fails_the_stage_and_a_rerun_resumes(tmp_path: Path, basque_texts: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = corpus(tmp_path, basque_texts, {"workers": 2})
    format_text = Normalizer.format

    def killing_format(self: Normalizer, text: str) -> str:
        if text.startswith(MARKER):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would
        return format_text(self, text)

    monkeypatch.setattr(Normalizer, "format", killing_format)
    work, out = tmp_path / "work", tmp_path / "out"
    with pytest.raises(
        LangadaptError, match=r"a worker process died during the 'process' phase .* finished shards are kept"
    ):
        run(cfg, out, work)
    assert not out.exists()  # nothing half-written where later stages look
    done = {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "process" / "completions").iterdir()}
    assert done  # some shards finished before the crash

    monkeypatch.setattr(Normalizer, "format", format_text)
    resumed = run(cfg, out, work)
    after = {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "process" / "completions").iterdir()}
    assert {name: after[name] for name in done} == done  # finished shards were not run again
    assert len(after) == resumed["shards"]
    fresh = run(cfg, tmp_path / "fresh", tmp_path / "fresh-work")
    assert resumed["sources"] == fresh["sources"]
    assert list(read_texts(corpus_file(out, "eu"))) == list(read_texts(corpus_file(tmp_path / "fresh", "eu")))


def test_a_work_folder_of_another_layout_starts_afresh(tmp_path: Path, basque_texts: list[str]) -> None:
    cfg = corpus(tmp_path, basque_texts, {"workers": 1})
    work = tmp_path / "work"
    first = run(cfg, tmp_path / "out", work)
    assert (work / "LAYOUT").read_text() == WORK_LAYOUT
    done = {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "process" / "completions").iterdir()}
    assert run(cfg, tmp_path / "again", work)["sources"] == first["sources"]  # same layout: resumed
    assert {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "process" / "completions").iterdir()} == done

    (work / "LAYOUT").unlink()  # as a folder left by a crashed run of an older release
    (work / "KEY").write_text("the run store's key\n")
    stale = work / "minhash" / "bucket_000" / "00000.minhash.sig"
    stale.write_bytes(b"\x00" * 56)  # one record of the old layout, which the new one cannot read
    rerun = run(cfg, tmp_path / "rerun", work)
    after = {p.name: p.stat().st_mtime_ns for p in (work / "logs" / "process" / "completions").iterdir()}
    assert after.keys() == done.keys() and all(after[name] > done[name] for name in done)  # every shard again
    assert (work / "KEY").read_text() == "the run store's key\n" and (work / "LAYOUT").read_text() == WORK_LAYOUT
    assert stale.stat().st_size % 12 == 0  # rewritten in 12-byte records
    assert rerun["sources"] == first["sources"]
    texts = {name: list(read_texts(corpus_file(tmp_path / name, "eu"))) for name in ("out", "rerun")}
    assert texts["rerun"] == texts["out"]


FAKE_SBATCH = """#!/bin/bash
# Stand-in for sbatch: keep the script, then run every array task of it here, one after the other.
script="${@: -1}"
cp "$script" "$FAKE_SLURM/job-$(ls "$FAKE_SLURM" | wc -l).sh"
offset=$(printf '%s\\n' "$@" | sed -n 's/.*RUN_OFFSET=\\([0-9]*\\).*/\\1/p')
last=$(sed -n 's/^#SBATCH --array=0-\\([0-9]*\\).*/\\1/p' "$script")
for task in $(seq 0 "$last"); do
  SLURM_ARRAY_TASK_ID=$task RUN_OFFSET=${offset:-0} SLURM_NODELIST=localhost bash "$script" > /dev/null 2>&1 || exit 1
done
echo "Submitted batch job 4242"
"""
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == -* ]]; do if [[ "$1" == -n ]]; then shift 2; else shift; fi; done
exec "$@"
"""


def test_slurm_scripts_and_tasks(tmp_path: Path, basque_texts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir, jobs = tmp_path / "bin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, body in {"sbatch": FAKE_SBATCH, "srun": FAKE_SRUN, "scontrol": "#!/bin/bash\necho localhost\n",
                       "squeue": "#!/bin/bash\nexit 0\n"}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(jobs))
    slurm = {"partition": "cpu", "time": "01:00:00", "cpus_per_task": 2, "mem_per_cpu_gb": 3, "poll_seconds": 0.1,
             "env_command": f"export PATH={Path(sys.executable).parent}:$PATH", "sbatch_args": {"account": "lab"}}
    cfg = corpus(tmp_path, basque_texts, {"kind": "slurm", "workers": 2, "shard_mb": 0.1, "slurm": slurm})
    report = run(cfg, tmp_path / "out", tmp_path / "work")

    scripts = sorted(jobs.iterdir(), key=lambda p: int(p.stem.split("-")[1]))
    process = scripts[0].read_text()
    for directive in ("--partition=cpu", "--time=01:00:00", "--cpus-per-task=2", "--mem-per-cpu=3G", "--account=lab",
                      f"--array=0-{report['shards'] - 1}%2", "--job-name=langadapt-data-process"):
        assert f"#SBATCH {directive}\n" in process
    assert "launch_pickled_pipeline" in process and str(tmp_path / "work" / "logs" / "process") in process
    tasks = [s.read_text() for s in scripts if "launch_pickled_pipeline" in s.read_text()]  # not merge_stats
    names = [line.split("=")[1] for text in tasks for line in text.splitlines() if "--job-name" in line]
    assert names == [
        "langadapt-data-process", "langadapt-data-buckets", "langadapt-data-clusters", "langadapt-data-write"]

    local = run(corpus(tmp_path, basque_texts, {"workers": 2, "shard_mb": 0.1}), tmp_path / "local",
                tmp_path / "local-work")
    assert report["sources"] == local["sources"] and report["shards"] == 2
    assert (corpus_file(tmp_path / "out", "eu").read_bytes() == corpus_file(tmp_path / "local", "eu").read_bytes())


def test_ray_local_mode(tmp_path: Path, basque_texts: list[str]) -> None:
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'langadapt[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run(corpus(tmp_path, basque_texts, {"kind": "ray", "workers": 2}), tmp_path / "out", tmp_path / "w")
    finally:
        ray.shutdown()
    local = run(corpus(tmp_path, basque_texts, {"workers": 2}), tmp_path / "local", tmp_path / "local-work")
    assert report["sources"] == local["sources"]
    assert corpus_file(tmp_path / "out", "eu").read_bytes() == corpus_file(tmp_path / "local", "eu").read_bytes()


class RecordRank(PipelineStep):
    """Appends the rank it runs for to a file (the order the executor started the ranks in)."""

    name = "record"

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.path.open("a") as handle:
            handle.write(f"{rank}\n")
        return
        yield


def test_local_ranks_start_in_the_given_order_and_a_rerun_keeps_it(tmp_path: Path) -> None:
    log = tmp_path / "ranks.txt"
    ForkingExecutor([RecordRank(log)], tasks=4, workers=1, logging_dir=str(tmp_path / "logs"), order=[2, 0, 3, 1]).run()
    assert log.read_text().split() == ["2", "0", "3", "1"]
    (tmp_path / "logs" / "completions" / "00000").unlink()
    (tmp_path / "logs" / "completions" / "00003").unlink()
    ForkingExecutor([RecordRank(log)], tasks=4, workers=1, logging_dir=str(tmp_path / "logs"), order=[2, 0, 3, 1]).run()
    assert log.read_text().split()[4:] == ["0", "3"]
    ForkingExecutor([RecordRank(log)], tasks=3, workers=2, logging_dir=str(tmp_path / "two"), order=[1, 2, 0]).run()
    assert sorted(log.read_text().split()[6:]) == ["0", "1", "2"]
