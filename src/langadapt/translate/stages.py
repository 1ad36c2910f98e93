"""The `translate` stage (before `sft`/`dpo`): every dataset of the section into `translate/NAME.jsonl`.

Beside each output, `NAME.dropped.jsonl` holds the dropped rows with their reason. The segment cache lives
outside the stage folder (`<output_dir>/.cache/translate.sqlite` unless `translate.cache` says otherwise),
so a failed or killed run, or a run with other filters, resumes without paying for a segment twice.
`sft.data` / `dpo.data` name an output as `translate:NAME` (see `resolve_data_ref`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from langadapt.config import RunConfig
from langadapt.errors import LangadaptError
from langadapt.pipeline import StageContext, stage
from langadapt.translate.config import TranslateConfig

DATA_REF = re.compile(r"^translate:([A-Za-z0-9_.-]+)$")


def target_language(cfg: RunConfig) -> str:
    assert cfg.translate is not None
    return cfg.translate.target_language or cfg.target_language


def cache_file(cfg: RunConfig) -> Path:
    assert cfg.translate is not None
    return Path(cfg.translate.cache or Path(cfg.output_dir) / ".cache" / "translate.sqlite")


def _inputs(cfg: RunConfig) -> Iterable[str]:
    assert cfg.translate is not None
    yield from (str(spec.path) for spec in cfg.translate.datasets.values())
    model = getattr(cfg.translate.backend, "model", None)
    if cfg.translate.backend.kind != "endpoint" and model is not None:
        yield str(model)  # a local folder is fingerprinted; a builtin or hub id by its name


def preflight_settings(settings: TranslateConfig, target: str, where: str = "translate") -> None:
    """Files exist and have a known format; the backend knows both languages; the key variable is set."""
    from langadapt.data.instruct import detect_format, read_records
    from langadapt.translate.backends import make_backend
    from langadapt.translate.core import check_filter_language

    if not settings.datasets:
        raise LangadaptError(
            f"{where}.datasets is empty — name at least one file, e.g. datasets: {{alpaca: data.jsonl}}"
        )
    for name, spec in settings.datasets.items():
        first = next(read_records(spec.path), None)
        if first is None:
            raise LangadaptError(f"{where}.datasets.{name}: '{spec.path}' holds no rows")
        detect_format(first[1], f"{spec.path}:{first[0]}")
    check_filter_language(settings, target)
    backend = make_backend(settings.backend)  # an endpoint checks its key variable and the http rule here
    try:
        backend.check_languages(settings.source_language, target)
        if settings.round_trip is not None:  # the way back runs on the same backend
            backend.check_languages(target, settings.source_language)
    finally:
        backend.close()


def _preflight(cfg: RunConfig) -> None:
    assert cfg.translate is not None
    preflight_settings(cfg.translate, target_language(cfg))


@stage("translate", config=TranslateConfig, before=("sft", "dpo"), produces=("instructions",),
       uses=("target_language",), external_inputs=_inputs, preflight=_preflight)
def translate_stage(cfg: RunConfig, ctx: StageContext) -> dict[str, Any]:
    from langadapt.translate.core import run_translation

    assert cfg.translate is not None
    return run_translation(cfg.translate, target=target_language(cfg), out_dir=ctx.out, cache_path=cache_file(cfg))


def is_data_ref(value: str | Path) -> bool:
    return isinstance(value, str) and DATA_REF.match(value) is not None


def resolve_data_ref(ref: str, inputs: dict[str, Path]) -> Path:
    """`translate:NAME` -> the translate stage's output file of dataset NAME (in a run, from `ctx.inputs`)."""
    match = DATA_REF.match(ref)
    if match is None:
        raise LangadaptError(f"'{ref}' is not a translate output — write translate:NAME")
    if "translate" not in inputs:
        raise LangadaptError(f"'{ref}' needs the translate stage — add a translate: section with dataset "
                             f"'{match.group(1)}'")
    path = inputs["translate"] / f"{match.group(1)}.jsonl"
    if not path.is_file():
        raise LangadaptError(f"'{ref}': the translate stage has no dataset '{match.group(1)}' — add it to "
                             "translate.datasets")
    return path


def resolve_data_refs(values: Iterable[str | Path], inputs: dict[str, Path]) -> list[Path]:
    """A data list with every `translate:NAME` replaced by its file."""
    return [resolve_data_ref(v, inputs) if is_data_ref(v) else Path(v) for v in values]


def check_data_refs(cfg: RunConfig, values: Iterable[str | Path], where: str) -> None:
    """Preflight of `translate:NAME` entries in a data list: the section exists and names the dataset."""
    for value in values:
        match = DATA_REF.match(value) if isinstance(value, str) else None
        if match is None:
            continue
        name = match.group(1)
        if cfg.translate is None or name not in cfg.translate.datasets:
            known = ", ".join(cfg.translate.datasets) if cfg.translate else "none (no translate section)"
            raise LangadaptError(f"{where}: '{value}' names no translate dataset — known: {known}")
