"""Run the data stage's phases on datatrove executors: local processes, Slurm array jobs, or Ray.

Every phase is one datatrove pipeline over `tasks` ranks with its own logging folder under the stage's
work folder (`logs/<phase>/`: `completions/`, `stats/`, `logs/task_*.log`), so a re-run skips the ranks a
crashed run finished. The local executor is datatrove's, run on a fork-based `ProcessPoolExecutor`:
workers inherit the models the parent loaded, and a worker that dies (killed, out of memory) fails the
phase — datatrove's `multiprocess.Pool` would wait for it forever.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from datatrove.executor.base import PipelineExecutor
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from datatrove.utils.stats import PipelineStats, Stats

from langadapt.data.config import ExecutorConfig
from langadapt.errors import LangadaptError

_FORKED: ForkingExecutor | None = None  # the executor a forked worker runs ranks of


def _cache_loguru_library_dirs() -> None:
    """datatrove adds two loguru handlers per task, and each handler asks `sysconfig` for every install
    scheme's paths (~15-30 ms, ~10 % of a small shard's time). The answer cannot change within a process,
    so compute it once. Skipped quietly if loguru moves the function."""
    try:
        from loguru._better_exceptions import ExceptionFormatter
    except ImportError:
        return
    lookup = getattr(ExceptionFormatter, "_get_lib_dirs", None)
    if callable(lookup) and not hasattr(lookup, "cache_info"):
        ExceptionFormatter._get_lib_dirs = staticmethod(functools.cache(lookup))


_cache_loguru_library_dirs()


def _reset_stats(pipeline: Sequence[PipelineStep]) -> None:
    for step in pipeline:
        step.stats = Stats(str(step))


def _run_forked_rank(rank: int) -> PipelineStats:
    assert _FORKED is not None
    _reset_stats(_FORKED.pipeline)
    return _FORKED._run_for_rank(rank, local_rank=1)  # local_rank ≠ 0: only errors reach the console


class ForkingExecutor(LocalPipelineExecutor):
    """datatrove's `LocalPipelineExecutor`, its ranks run by forked workers that fail loudly, started in
    `order` (default: rank order); a worker takes the next rank as soon as it is free."""

    def __init__(self, pipeline: list[PipelineStep], tasks: int, workers: int, logging_dir: str,
                 order: Sequence[int] | None = None):
        super().__init__(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, start_method="fork")
        self.order = list(order) if order is not None else list(range(tasks))
        assert sorted(self.order) == list(range(tasks)), "order lists each rank once"

    def run(self) -> PipelineStats:
        global _FORKED
        ranks = self.get_incomplete_ranks(self.order)
        if self.workers == 1 or len(ranks) <= 1:
            results = []
            for rank in ranks:
                _reset_stats(self.pipeline)
                results.append(self._run_for_rank(rank, local_rank=1))
            return sum(results, start=PipelineStats())
        _FORKED = self
        try:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=min(self.workers, len(ranks)), mp_context=context) as pool:
                futures = [pool.submit(_run_forked_rank, rank) for rank in ranks]
                results = []
                for future in as_completed(futures):
                    results.append(future.result())
        finally:
            _FORKED = None
        return sum(results, start=PipelineStats())


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Engine:
    """Runs phases one after the other on the configured executor; records each phase's wall time."""

    def __init__(self, cfg: ExecutorConfig, work: Path, log: logging.Logger | None = None):
        self.cfg, self.work = cfg, Path(work)
        self.workers = cfg.workers or (default_workers() if cfg.kind == "local" else 64)
        self.log = log or logging.getLogger("langadapt.data")
        self.seconds: dict[str, float] = {}

    def logs(self, phase: str) -> Path:
        return self.work / "logs" / phase

    def forget(self, phase: str, ranks: Sequence[int] | None = None) -> None:
        """Make `phase` run again (only `ranks` of it, when given)."""
        if ranks is None:
            shutil.rmtree(self.logs(phase), ignore_errors=True)
            return
        for rank in ranks:
            (self.logs(phase) / "completions" / f"{rank:05d}").unlink(missing_ok=True)

    def run(self, phase: str, pipeline: list[PipelineStep], tasks: int, workers: int | None = None,
            prepare: Callable[[], object] | None = None, order: Sequence[int] | None = None) -> None:
        """Run `pipeline` on ranks 0..tasks-1 (those not already complete); an error names the failed phase.

        `prepare` loads models in this process before local workers fork, so they share them. `order` is
        the order local workers start the ranks in (costliest first cuts the tail); Slurm and Ray schedule
        array tasks themselves."""
        workers = min(workers or self.workers, tasks)
        start = time.perf_counter()
        logging_dir = str(self.logs(phase))
        try:
            if self.cfg.kind == "local":
                if prepare is not None:
                    prepare()
                ForkingExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, order=order).run()
            elif self.cfg.kind == "slurm":
                self._run_slurm(phase, pipeline, tasks, workers, logging_dir)
            else:
                self._run_ray(pipeline, tasks, workers, logging_dir)
        except BrokenProcessPool:
            raise LangadaptError(
                f"data: a worker process died during the '{phase}' phase (killed, or out of memory?) — lower "
                f"data.executor.workers or data.executor.shard_mb and run again; finished shards are kept"
            ) from None
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start
        self.log.info("data: %s done in %.1f s (%d tasks)", phase, self.seconds[phase], tasks)

    def rank_stats(self, phase: str) -> dict[int, list[dict[str, Any]]]:
        """The stats each rank of `phase` saved: rank → one {name, time_stats, stats} per step."""
        folder = self.logs(phase) / "stats"
        return (
            {int(p.stem): json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}
        )

    # -- Slurm and Ray --------------------------------------------------------------------------------------

    def slurm_executor(self, phase: str, pipeline: list[PipelineStep], tasks: int, workers: int,
                       logging_dir: str) -> PipelineExecutor:
        from datatrove.executor.slurm import SlurmPipelineExecutor

        slurm = self.cfg.slurm
        assert slurm is not None
        return SlurmPipelineExecutor(
            pipeline, tasks=tasks, workers=workers, time=slurm.time, partition=slurm.partition,
            cpus_per_task=slurm.cpus_per_task, mem_per_cpu_gb=slurm.mem_per_cpu_gb, qos=slurm.qos,
            job_name=f"langadapt-data-{phase}", env_command=slurm.env_command, sbatch_args=dict(slurm.sbatch_args),
            logging_dir=logging_dir, slurm_logs_folder=str(Path(logging_dir) / "slurm_logs"), mail_user=None,
        )

    def _run_slurm(self, phase: str, pipeline: list[PipelineStep], tasks: int, workers: int, logging_dir: str) -> None:
        """Submit the phase as one array job and wait until every rank completed (or the job is gone)."""
        executor = self.slurm_executor(phase, pipeline, tasks, workers, logging_dir)
        executor.run()  # sbatch; returns at once
        assert self.cfg.slurm is not None
        while executor.get_incomplete_ranks(skip_completed=True):
            if executor.job_id not in (None, -1) and not _slurm_job_alive(str(executor.job_id)):
                missing = executor.get_incomplete_ranks(skip_completed=True)
                raise LangadaptError(
                    f"data: Slurm job {executor.job_id} ('{phase}') ended with {len(missing)} of {tasks} tasks "
                    f"unfinished — see {Path(logging_dir) / 'slurm_logs'}; run again to resume the rest"
                )
            time.sleep(self.cfg.slurm.poll_seconds)

    def _run_ray(self, pipeline: list[PipelineStep], tasks: int, workers: int, logging_dir: str) -> None:
        try:
            import ray
        except ImportError:
            raise LangadaptError(
                "data.executor.kind is ray but ray is not installed — pip install 'langadapt[ray]'"
            ) from None
        from datatrove.executor.ray import RayPipelineExecutor

        ray_cfg = self.cfg.ray
        assert ray_cfg is not None
        if not ray.is_initialized():
            ray.init(address=ray_cfg.address, log_to_driver=False, include_dashboard=False)
        RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir,
                            cpus_per_task=ray_cfg.cpus_per_task, mem_per_cpu_gb=ray_cfg.mem_per_cpu_gb).run()
        incomplete = [r for r in range(tasks) if not (Path(logging_dir) / "completions" / f"{r:05d}").exists()]
        if incomplete:
            raise LangadaptError(f"data: {len(incomplete)} of {tasks} Ray tasks failed — see {logging_dir}/logs")


def _slurm_job_alive(job_id: str) -> bool:
    """Whether squeue still lists the job (pending or running); array tasks share the job's id."""
    try:
        listed = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return True  # no squeue here: keep waiting for the completion markers
    return bool(listed.stdout.strip())
