"""Rebuild the bundled multiple-choice task files from the bundled dev split (deterministic).

    .venv/bin/python examples/data/eu/tasks/make_tasks.py
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from langadapt.evaluate.builders import continuation_mc_items, item_records

HERE = Path(__file__).resolve().parent
DEV = HERE.parent / "libreoffice-help.en-eu.dev.jsonl.gz"


def main() -> None:
    with gzip.open(DEV, "rt", encoding="utf-8") as handle:
        pairs = [json.loads(line) for line in handle]
    items = continuation_mc_items(pairs, "eu", n=150, seed=0)
    out = HERE / "continuation-mc.dev.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in item_records(items)), encoding="utf-8")
    print(f"{len(items)} items -> {out}")


if __name__ == "__main__":
    main()
