"""Data-layer figures on the real Basque, Russian and Lithuanian train files (../shared/data).

1. `throughput`: the default pipeline (clean → language ID → exact + MinHash dedup) end to end, MB/s of
   UTF-8 text, on the target side of the three train files: the old single-process pipeline (commit
   OLD_COMMIT, extracted with `git archive` and run from a temporary folder) against the datatrove one with
   1 and 2 workers (also with fastText as the cascade's first pass, the default before CLD2), and against
   the issue's own comparison pipeline (datatrove's reader → a fastText language filter → writer, the
   2.4 MB/s it quotes) on the same texts, each in a fresh child process; then again on twice the input
   (each text again with its word order reversed: same words and language, new documents) for the memory
   per worker.
2. `langid`: recall on the (cleaned) target side and how much of the English side each backend keeps as
   the target language (restricted to eu/ru/lt/en), per file, with µs per document on one core.
3. `pack`: tokenising ~10M tokens with a 64k-vocabulary byte-level BPE trained here, 1 vs 2 worker
   processes: tokens/s and peak memory, then packing them into 2048-token blocks.
4. `mix`: an 80:20 Basque:English mixture by tokens packed at 1024/2048, concat and best-fit, against
   mixing by documents and one padded document per block.
5. `gz`: one large .jsonl.gz read in 32 pieces in order, with readers parked between pieces against a
   fresh reader per piece.
6. `tokens`: the default pipeline with 2 workers as the stage runs it, counting SmolLM2's tokens (the
   builtin's tokenizer, materialised once under $LANGADAPT_HOME) on every k-th kept document
   (`data.token_count_every`): seconds, the write phase and each estimate's error against k = 1.
7. `scale`: 1 against 2 workers on 4× the input (the train files and three reordered copies of each).

    flock /tmp/langadapt-cpu.lock .venv/bin/python bench/data.py [--only throughput langid pack mix gz tokens scale]
        [--scratch DIR]

The sections live in data_pipeline.py (1, 6, 7: end to end, in child processes) and data_steps.py (2-5).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import REPO
from data_pipeline import measure, scale, throughput, token_counting
from data_steps import gz_pieces, langid, mix_figures, pack_figures, tokenize_child

# Where every section's work folders go: on the disk a run's own work folders use (`runs/<name>/.work`).
# This machine's /tmp creates a file in 0.6-0.8 ms against 0.03-0.04 ms elsewhere on the same disk, and a
# shard's phases create ~30 files (docs/benchmarks.md); `--scratch /tmp` measures under that cost.
SCRATCH = REPO / "runs" / ".bench"
SECTIONS = {"throughput": throughput, "langid": langid, "pack": pack_figures, "mix": mix_figures,
            "gz": gz_pieces, "tokens": token_counting, "scale": scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--tokenize", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--scratch", type=Path, default=SCRATCH, help=f"folder for work folders (default {SCRATCH})")
    args = parser.parse_args()
    if args.measure:
        kind, workers, *copies = args.measure
        if kind == "old":  # the old source tree comes first on PYTHONPATH; common.py put ours in front of it
            sys.path.remove(str(REPO / "src"))
        print(json.dumps(measure(kind, int(workers), copies[0] if copies else None)))
        return
    if args.tokenize:
        path, tokenizer_dir, workers, cache = args.tokenize
        print(json.dumps(tokenize_child(path, tokenizer_dir, int(workers), cache)))
        return
    args.scratch.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(args.scratch.resolve())  # the child processes inherit it
    tempfile.tempdir = None  # read TMPDIR again
    print(f"work folders under {tempfile.gettempdir()}", flush=True)
    for name in args.only:
        print(f"{name}: load average before {os.getloadavg()}", flush=True)
        print(SECTIONS[name](), flush=True)
        print(f"{name}: load average after {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
