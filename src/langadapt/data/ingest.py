"""Ingest: read, normalise, filter, identify the language and deduplicate every source, on datatrove.

The corpus is cut into shards (`langadapt.data.shards`) and run through four datatrove phases, each a
pipeline of steps (`langadapt.data.steps`) run by the configured executor (`langadapt.data.engine`):

1. `process` (a task per shard): read → normalise → quality filters → language ID → write the survivors
   and their exact-hash and MinHash signature files;
2. `buckets`: the documents whose exact hash or a MinHash band collides (a task per band and hash range,
   `langadapt.data.dedup`);
3. `clusters` (one task): which documents each shard drops (`langadapt.data.clusters`);
4. `write` (a task per shard): drop them, write the shard's final gzip member, count tokens.

Finally each source's members are concatenated in shard order into `data/corpus/<source>.jsonl.gz`
(eval texts: `data/eval/<name>.jsonl.gz`), so the documents and bytes do not depend on the worker count.
Eval texts are normalised but never filtered, and come first in reading order, so training documents that
duplicate one of them are dropped (no test-set leakage).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.data.clusters import DuplicateClusters
from langadapt.data.config import DataConfig
from langadapt.data.corpus import corpus_file, eval_file
from langadapt.data.dedup import EXACT_LAYOUT, BandCollisions, plan_band_tasks
from langadapt.data.engine import Engine
from langadapt.data.langid import LanguageIdentifier
from langadapt.data.reports import SourceReport, source_reports, step_counters, throughput
from langadapt.data.shards import Shard, costliest_first, plan_shards
from langadapt.data.steps import (
    CorpusWriter,
    DuplicateFilter,
    LanguageFilter,
    Normalizer,
    QualityFilter,
    ShardReader,
    ShardWriter,
    SurvivorReader,
    band_layout,
    shard_file,
)
from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    from datatrove.pipeline.base import PipelineStep
    from transformers import PreTrainedTokenizerBase

# Where to loosen each check when it removed a whole source.
_KNOB = {
    "empty": "the documents are empty after normalisation — check text_field",
    "min_chars": "lower data.clean.min_chars",
    "min_words": "lower data.clean.min_words",
    "non_letter_share": "raise data.clean.max_non_letter_share",
    "duplicate_lines": "raise data.clean.max_duplicate_line_share / max_duplicate_line_char_share",
    "top_ngram": "raise data.clean.max_top_ngram_share",
    "duplicate_ngrams": "raise data.clean.max_duplicate_ngram_share",
    "language": "check data.sources.{name}.language, or lower data.langid.min_confidence",
    "eval_overlap": "the source repeats the eval texts — set data.dedup.eval_overlap: false if that is intended",
    "exact_duplicate": "the source only repeats earlier documents (set data.dedup.exact: false to keep them)",
    "near_duplicate": "raise data.dedup.near.threshold",
    "invalid_utf8": "the files are not UTF-8 — convert them (iconv -f LATIN1 -t UTF-8)",
    "invalid_json": "the lines are not JSON — name the files *.txt or set data.sources.{name}.format",
    "missing_field": "set data.sources.{name}.text_field",
}


def languages_in_play(cfg: DataConfig, target_language: str | None) -> list[str]:
    """The detector's candidates: every source's language, the target, English and the listed extras."""
    assert cfg.langid is not None
    codes = {s.language for s in (*cfg.sources.values(), *cfg.eval_sources.values()) if s.language}
    codes |= {target_language or "en", "en", *cfg.langid.languages}
    return sorted(codes)


# What the work folder's files are (bumped with their layout: 2 = one 64-bit key per MinHash band). A folder
# left by another layout, e.g. a run that crashed before an upgrade, starts afresh: its completion markers
# would otherwise skip shards whose files the new code cannot read.
WORK_LAYOUT = "2"


def _claim(work: Path) -> None:
    """Empty `work` (all but the run store's KEY) unless it was written in `WORK_LAYOUT`; then mark it so."""
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "LAYOUT"
    if marker.is_file() and marker.read_text() == WORK_LAYOUT:
        return
    for child in work.iterdir():
        if child.name != "KEY":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    marker.write_text(WORK_LAYOUT)


@contextmanager
def _folder(work: Path | None) -> Iterator[Path]:
    if work is not None:
        _claim(Path(work))
        yield Path(work)
        return
    with tempfile.TemporaryDirectory(prefix="langadapt-data-") as tmp:
        yield Path(tmp)


def ingest_corpus(
    cfg: DataConfig, *, seed: int, target_language: str | None, tokenizer: PreTrainedTokenizerBase | None,
    out: Path | None = None, work: Path | None = None, log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Ingest every eval and training source; with `out`, write the corpus files the later stages read.

    `work` holds the shards' intermediate files and datatrove's completion markers: a re-run with the same
    `work` resumes the shards a crashed run finished (the stage passes its keyed work folder)."""
    with _folder(work) as folder:
        return CorpusRun(cfg, seed, target_language, tokenizer, folder, log).execute(out)


class CorpusRun:
    """One ingest: the shard plan, the engine that runs the phases, and the reports they add up to."""

    def __init__(self, cfg: DataConfig, seed: int, target_language: str | None,
                 tokenizer: PreTrainedTokenizerBase | None, work: Path, log: logging.Logger | None):
        self.cfg, self.seed, self.tokenizer, self.work = cfg, seed, tokenizer, work
        self.log = log or logging.getLogger("langadapt.data")
        self.codes = languages_in_play(cfg, target_language) if cfg.langid else None
        self.identifier = LanguageIdentifier.from_config(cfg.langid, self.codes) if cfg.langid and self.codes else None
        self.plan = plan_shards(cfg, cfg.executor.shard_mb)
        self.engine = Engine(cfg.executor, work, self.log)

    def execute(self, out: Path | None) -> dict[str, Any]:
        start = time.perf_counter()
        first = True
        while True:
            self.engine.run("process", self._process_pipeline(), len(self.plan), order=costliest_first(self.plan),
                            prepare=self.identifier.load if self.identifier else None)
            if first:
                self._check_language_removal()
                first = False
            if self.cfg.dedup is not None:
                self._deduplicate()
            short = self._short_capped_shards()
            if not short:
                break
            self._raise_caps(short)
        quotas = {s.index: self.cfg.sources[s.source].max_documents for s in self.plan if s.stop_after is not None}
        self.engine.run("write", [SurvivorReader(self.work), DuplicateFilter(self.work, quotas),
                                  CorpusWriter(self.work, self.tokenizer, self._token_every())], len(self.plan),
                        order=costliest_first(self.plan))
        if out is not None:
            self._merge(Path(out))
        return self._report(time.perf_counter() - start)

    def _token_every(self) -> dict[int, int]:
        """Shard → count tokens on every k-th kept document (training shards; eval texts are all counted)."""
        return {s.index: self.cfg.token_count_every for s in self.plan if not s.eval}

    # -- phases ---------------------------------------------------------------------------------------------

    def _process_pipeline(self) -> list[PipelineStep]:
        steps: list[PipelineStep] = [ShardReader(self.cfg, self.plan), Normalizer(self.cfg),
                                     QualityFilter(self.cfg, self.plan)]
        if self.codes is not None:
            steps.append(LanguageFilter(self.cfg, self.plan, self.codes))
        steps.append(ShardWriter(self.cfg, self.plan, self.work, self.seed))
        return steps

    def _deduplicate(self) -> None:
        """Band collisions of the exact hashes and MinHash bands, then the clusters (always recomputed from
        the current signature files: cheap next to processing, and a capped source may have re-read)."""
        tasks = plan_band_tasks(self.work / "exact", EXACT_LAYOUT) if self.cfg.dedup.exact else []
        layout = band_layout(self.cfg, self.seed)
        if layout is not None:
            tasks += plan_band_tasks(self.work / "minhash", layout)
        for phase in ("buckets", "clusters"):
            self.engine.forget(phase)
        shutil.rmtree(self.work / "dups", ignore_errors=True)
        if tasks:
            self.engine.run("buckets", [BandCollisions(tasks, self.work / "dups")], len(tasks))
        self.engine.run("clusters", [DuplicateClusters(self.plan, self.work)], 1)

    def _short_capped_shards(self) -> list[Shard]:
        """Capped shards that stopped early but keep fewer than `max_documents` after dedup."""
        process = self.engine.rank_stats("process")
        short = []
        for shard in self.plan:
            if shard.stop_after is None or shard.eval:
                continue
            counters = step_counters(process.get(shard.index, []))
            kept = counters.get("survivors", 0) - _rows(shard_file(self.work / "removed", shard.index, ".npy"))
            if counters.get("truncated") and kept < self.cfg.sources[shard.source].max_documents:
                short.append(shard)
        return short

    def _raise_caps(self, short: list[Shard]) -> None:
        """Read twice as far into the short capped sources and redo their shards and the dedup."""
        for shard in short:
            self.plan[shard.index] = dataclasses.replace(shard, stop_after=2 * shard.stop_after)
            self.log.info("data: '%s' is short of max_documents after dedup; reading further", shard.source)
        self.engine.forget("process", [s.index for s in short])

    # -- checks and results ----------------------------------------------------------------------------------

    def _check_language_removal(self) -> None:
        """Stop when language ID removed most of a source: its text_field or language is wrong."""
        limit = self.cfg.langid.max_removed_share if self.cfg.langid else None
        if limit is None:
            return
        process = self.engine.rank_stats("process")
        for name, source in self.cfg.sources.items():
            if not source.language:
                continue
            counters: Counter[str] = Counter()
            for shard in self.plan:
                if not shard.eval and shard.source == name:
                    counters.update(step_counters(process.get(shard.index, [])))
            judged = sum(v for k, v in counters.items() if k.startswith("language_"))
            removed = counters.get("dropped_language", 0)
            if judged and removed / judged > limit:
                raise LangadaptError(language_removal_message(name, source.text_field, source.language, removed,
                                                              judged, counters, limit))

    def _merge(self, out: Path) -> None:
        """Concatenate each source's shard members, in order, into its corpus (or eval) file."""
        started: set[Path] = set()
        for shard in self.plan:
            target = (eval_file if shard.eval else corpus_file)(out, shard.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = "ab" if target in started else "wb"
            started.add(target)
            with target.open(mode) as handle, shard_file(self.work / "corpus", shard.index).open("rb") as member:
                shutil.copyfileobj(member, handle, 1 << 20)

    def _report(self, seconds: float) -> dict[str, Any]:
        languages = {(True, n): s.language for n, s in self.cfg.eval_sources.items()}
        languages |= {(False, n): s.language for n, s in self.cfg.sources.items()}
        stats = {phase: self.engine.rank_stats(phase) for phase in ("process", "buckets", "clusters", "write")}
        reports = source_reports(self.plan, languages, stats["process"], stats["write"])
        with_tokens = self.tokenizer is not None
        for (is_eval, name), report in reports.items():
            source = (self.cfg.eval_sources if is_eval else self.cfg.sources)[name]
            if report.kept.get("documents", 0) == 0:
                if is_eval:
                    raise LangadaptError(
                        f"data.eval_sources.{name}: '{source.path}' holds no text — check the file and text_field")
                raise LangadaptError(_nothing_left(name, source.path, report))
            if not is_eval:
                self.log.info("%s: kept %d of %d documents (removed: %s)", name, report.kept["documents"], report.read,
                              dict(report.removed.most_common()) or "none")
        input_bytes = sum(step_counters(r).get("input_bytes", 0) for r in stats["process"].values())
        documents = sum(r.read for r in reports.values())
        work_bytes = sum(path.stat().st_size for path in self.work.rglob("*") if path.is_file())
        return {
            "langid_languages": self.codes,
            "langid_backend": self.cfg.langid.backend if self.cfg.langid else None,
            "eval": {n: r.to_dict(with_tokens) for (e, n), r in reports.items() if e},
            "sources": {n: r.to_dict(with_tokens) for (e, n), r in reports.items() if not e},
            "shards": len(self.plan),
            "throughput": throughput(input_bytes, documents, seconds, self.engine.seconds, stats, self.engine.workers,
                                     work_bytes),
        }


def _rows(path: Path) -> int:
    import numpy as np

    return len(np.load(path)) if path.exists() else 0


def language_removal_message(name: str, text_field: str, language: str, removed: float, judged: float,
                             counters: dict[str, float], limit: float) -> str:
    detected = sorted(((k.removeprefix("language_"), int(v)) for k, v in counters.items()
                       if k.startswith("language_")), key=lambda kv: -kv[1])
    found = ", ".join(f"{code} {count:,}" for code, count in detected[:4])
    return (
        f"data source '{name}': language ID removed {removed / judged:.0%} of its {int(judged):,} documents "
        f"(detected: {found}) — the text is not '{language}': check data.sources.{name}.text_field "
        f"('{text_field}') and language ('{language}'), or raise data.langid.max_removed_share ({limit:g}) "
        "if that is expected"
    )


def _nothing_left(name: str, path: str, report: SourceReport) -> str:
    if report.read == 0:
        return f"data source '{name}': '{path}' holds no documents — check the file and text_field"
    culprit, count = report.removed.most_common(1)[0]
    others = ", ".join(f"{k} {v}" for k, v in report.removed.most_common()[1:] if v)
    hint = _KNOB.get(culprit, "check the source").format(name=name)
    return (
        f"data source '{name}': all {report.read} documents were removed — '{culprit}' removed {count}"
        f"{f' (then {others})' if others else ''} — {hint}"
    )
