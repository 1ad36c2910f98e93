"""The training worker each launched process runs: `python -m langadapt.train.worker JOB.json`.

`langadapt run` starts its CPT processes under torchrun or `accelerate launch` with this module, not by
re-entering the CLI: the job file is the `CptJob` itself (settings validated by the same schema), and rank 0
writes the metrics beside the outputs for the parent to collect.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from langadapt.train.config import CptConfig
from langadapt.train.cpt import CptJob, run_cpt

METRICS = "metrics.json"


def write_job(job: CptJob, path: Path) -> None:
    path.write_text(json.dumps({
        "settings": job.settings.model_dump(mode="json"), "model": job.model, "data": str(job.data),
        "out": str(job.out), "work": str(job.work), "tokenizer": job.tokenizer, "seed": job.seed,
        "trust_remote_code": job.trust_remote_code,
    }, indent=2) + "\n", encoding="utf-8")


def read_job(path: Path) -> CptJob:
    spec = json.loads(path.read_text(encoding="utf-8"))
    return CptJob(
        settings=CptConfig.model_validate(spec["settings"]), model=spec["model"], data=Path(spec["data"]),
        out=Path(spec["out"]), work=Path(spec["work"]), tokenizer=spec["tokenizer"], seed=spec["seed"],
        trust_remote_code=spec["trust_remote_code"],
    )


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m langadapt.train.worker JOB.json")
    job = read_job(Path(argv[0]))
    metrics = run_cpt(job)
    if int(os.environ.get("RANK", "0")) == 0:
        (job.out / METRICS).write_text(json.dumps(metrics, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
