"""What the data stage reports per source and per step, added up from the stats datatrove saves per rank.

Every step's counters (`dropped_<reason>`, `language_<code>`, `normalized`, the corpus writer's
documents / characters / words / tokens) are saved by datatrove per shard; a source's report is the sum
over its shards. Every document read is either kept or dropped by exactly one check, so per source
`read = kept + Σ removed`, where `removed` includes unreadable documents (`invalid_utf8`, `invalid_json`,
`missing_field`) and, for a capped source, those read past `max_documents`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from langadapt.data.shards import Shard
from langadapt.data.stats import TextStats

RankStats = dict[int, list[dict[str, Any]]]  # rank → one {name, time_stats, stats} per pipeline step
DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate", "eval_overlap")
UNREADABLE = ("invalid_utf8", "invalid_json", "missing_field")


def total(value: Any) -> float:
    """A datatrove MetricStats as saved: a bare number, or a dict with its `total`."""
    return value.get("total", 0) if isinstance(value, dict) else (value or 0)


def step_counters(steps: list[dict[str, Any]]) -> Counter[str]:
    counters: Counter[str] = Counter()
    for step in steps:
        for key, value in step["stats"].items():
            counters[key] += total(value)
    return counters


@dataclass
class SourceReport:
    """What happened to one source's documents."""

    language: str | None
    removed: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    normalized: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    decided_by: Counter[str] = field(default_factory=Counter)

    @property
    def read(self) -> int:
        return int(self.kept.get("documents", 0) + sum(self.removed.values()))

    def add(self, counters: Counter[str]) -> None:
        for key, value in counters.items():
            if key.startswith("dropped_"):
                self.removed[key.removeprefix("dropped_")] += int(value)
            elif key.startswith("language_"):
                self.languages[key.removeprefix("language_")] += int(value)
            elif key.startswith("decided_by_"):
                self.decided_by[key.removeprefix("decided_by_")] += int(value)
        self.normalized += int(counters.get("normalized", 0))

    def to_dict(self, with_tokens: bool) -> dict[str, Any]:
        removed = {k: v for k, v in sorted(self.removed.items()) if v}
        return {
            **TextStats.of_counts(self.kept, with_tokens).to_dict(),
            "language": self.language,
            "read": self.read,
            **{reason: removed.get(reason, 0) for reason in UNREADABLE},
            "normalized": self.normalized,
            "removed": removed,
            "duplicates": sum(removed.get(k, 0) for k in DUPLICATE_REASONS),
            "languages": dict(self.languages.most_common()),
            "language_id": dict(self.decided_by.most_common()),
        }


def source_reports(plan: list[Shard], languages: dict[tuple[bool, str], str | None], process: RankStats,
                   write: RankStats) -> dict[tuple[bool, str], SourceReport]:
    """(is eval, name) → the source's report, summed over its shards' process and write phases."""
    reports = {key: SourceReport(language) for key, language in languages.items()}
    for shard in plan:
        report = reports[shard.eval, shard.source]
        report.add(step_counters(process.get(shard.index, [])))
        written = step_counters(write.get(shard.index, []))
        report.add(written)
        for key in ("documents", "characters", "words", "tokens"):
            report.kept[key] = report.kept.get(key, 0) + int(written.get(key, 0))
        sampled = written.get("token_sample_documents", written.get("documents", 0))  # absent: all counted
        report.kept["token_sample_documents"] = report.kept.get("token_sample_documents", 0) + int(sampled)
    return reports


def throughput(input_bytes: float, documents: int, wall_seconds: float, phases: dict[str, float],
               stats: dict[str, RankStats], workers: int, work_bytes: int) -> dict[str, Any]:
    """End-to-end MB/s and documents/s, and per step the core-seconds it took and the rate it alone would
    run at on one core (input MB of the whole stage / the step's seconds); `work_bytes`: the scratch the
    stage's work folder held at its end (the disk a corpus this size needs besides its output). That is its
    fullest unless nearly every document is a duplicate: the cluster phase's own scratch (≤ 9 bytes a
    document, deleted after it) can then briefly exceed the corpus the write phase adds."""
    mb = input_bytes / 1e6
    steps: dict[str, dict[str, float]] = {}
    for phase, ranks in stats.items():
        for step_list in ranks.values():
            for step in step_list:
                name = f"{phase}/{step['name'].split(': ', 1)[-1]}"
                entry = steps.setdefault(name, {"seconds": 0.0, "documents": 0})
                entry["seconds"] += float(total(step["time_stats"]))
                counts = step["stats"]
                entry["documents"] += int(
                    max(total(counts.get(k, 0)) for k in ("total", "read", "survivors", "documents"))
                )
    for entry in steps.values():
        seconds = entry["seconds"]
        entry["seconds"] = round(seconds, 3)
        entry["mb_per_s"] = round(mb / seconds, 3) if seconds else None
        entry["docs_per_s"] = round(entry["documents"] / seconds, 1) if seconds else None
    return {
        "input_mb": round(mb, 3), "documents": documents, "workers": workers, "wall_seconds": round(wall_seconds, 3),
        "mb_per_s": round(mb / wall_seconds, 3) if wall_seconds else None,
        "docs_per_s": round(documents / wall_seconds, 1) if wall_seconds else None,
        "phases": {name: round(seconds, 3) for name, seconds in phases.items()},
        "steps": steps,
        "work_mb": round(work_bytes / 1e6, 3),
    }
