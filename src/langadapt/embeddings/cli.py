"""`langadapt embed init` and `langadapt embed probe`: embedding surgery without a run config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from langadapt.embeddings.config import CalibrationConfig

embed_app = typer.Typer(help="Embedding surgery: give a model a new tokenizer without losing what it knows.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(embed_app, name="embed")


ModelOpt = Annotated[str, typer.Option("--model", help="Model to resize: builtin:NAME, a folder or a hub id.")]
TokenizerOpt = Annotated[
    Path, typer.Option("--tokenizer", help="New tokenizer folder with token_map.json (from `vocab train`).")
]
CorpusOpt = Annotated[
    list[Path] | None, typer.Option("--corpus", help="Target-language text, jsonl[.gz] (repeatable).")
]
EnglishOpt = Annotated[list[Path] | None, typer.Option("--english", help="English text, jsonl[.gz] (repeatable).")]
FieldOpt = Annotated[str, typer.Option("--text-field", help="JSON field of the corpus files.")]
EnglishFieldOpt = Annotated[str, typer.Option("--english-field", help="JSON field of the English files.")]
OptionsOpt = Annotated[
    str | None, typer.Option("--options", help='Per-method options as JSON, e.g. \'{"distill": {"steps": 8}}\'.')
]
CalibrateOpt = Annotated[
    bool, typer.Option("--calibrate-output", help="Output-side calibration at its defaults (logit cap on English).")
]
CalibrationOpt = Annotated[
    str | None, typer.Option("--calibration", help='embed.calibration as JSON, e.g. \'{"shared_offset": true}\'.')
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the methods that sample.")]
RemoteOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Allow a model with custom code.")]
BaseTokOpt = Annotated[
    str | None, typer.Option("--base-tokenizer", help="Tokenizer the new one extends (default: the model's).")
]


def _config(method: str, options: str | None, calibrate: bool, auto_methods: str | None = None,
            english_limit: float | None = None, documents: int | None = None, calibration: str | None = None):
    from langadapt.embeddings.config import AutoConfig, EmbedConfig
    from langadapt.embeddings.registry import AUTO, get_method, registered_methods, unknown_method_message
    from langadapt.errors import LangadaptError

    try:
        parsed = json.loads(options) if options else {}
    except json.JSONDecodeError as exc:
        raise LangadaptError(f"--options is not JSON ({exc.msg}) — e.g. '{{\"distill\": {{\"steps\": 8}}}}'") from None
    known = registered_methods()
    for name, values in parsed.items():
        if name not in known:
            raise LangadaptError(unknown_method_message(name, known, "--options"))
        known[name].parse_options(values)
    auto = AutoConfig()
    if auto_methods:
        auto = AutoConfig(methods=[m.strip() for m in auto_methods.split(",") if m.strip()])
    if english_limit is not None:
        auto.english_limit = english_limit
    if documents is not None:
        auto.documents = documents
    for name in (auto.methods if method == AUTO else [method]):
        get_method(name)
    return EmbedConfig(method=method, options=parsed, calibration=_calibration(calibration, calibrate), auto=auto)


def _calibration(calibration: str | None, calibrate: bool) -> CalibrationConfig | None:
    """`--calibration` JSON, else the defaults under `--calibrate-output`, else none."""
    from pydantic import ValidationError

    from langadapt.config import describe_errors
    from langadapt.embeddings.config import CalibrationConfig
    from langadapt.errors import LangadaptError

    if calibration is None:
        return CalibrationConfig() if calibrate else None
    try:
        return CalibrationConfig.model_validate(json.loads(calibration))
    except json.JSONDecodeError as exc:
        raise LangadaptError(f"--calibration is not JSON ({exc.msg}) — e.g. '{{\"shared_offset\": true}}'") from None
    except ValidationError as exc:
        raise LangadaptError("--calibration: " + "; ".join(describe_errors(exc, CalibrationConfig))) from None


def _corpus(corpus: list[Path] | None, english: list[Path] | None, text_field: str, english_field: str, probe: int):
    """Corpus files read through the data layer's readers (one field each), as the methods' Corpus."""
    from itertools import islice

    from langadapt.data.config import SourceConfig
    from langadapt.data.sources import iter_documents
    from langadapt.embeddings.registry import Corpus, ProbeTexts

    def read_text_file(path: Path, field: str):
        return iter_documents(SourceConfig(path=str(path.expanduser().resolve()), text_field=field), path.name)

    def reader(files: list[Path] | None, field: str, skip: int):
        if not files:
            return None
        return lambda: islice((t for f in files for t in read_text_file(f, field)), skip, None)

    read_target, read_english = reader(corpus, text_field, 0), reader(english, english_field, 0)
    held_out = None
    if probe:
        held_out = ProbeTexts(list(islice(read_target(), probe)) if read_target else [],
                              list(islice(read_english(), probe)) if read_english else [])
    return Corpus(reader(corpus, text_field, probe), reader(english, english_field, probe), held_out)


@embed_app.command("methods")
def methods() -> None:
    """List the init methods `embed.method` accepts (the registry imports torch, so --help does not list them)."""
    from langadapt.embeddings.registry import AUTO, registered_methods

    for name, method in sorted(registered_methods().items()):
        corpus = " [reads the corpus]" if method.needs_corpus else ""
        typer.echo(f"{name}: {method.doc}{corpus}")
    typer.echo(f"{AUTO}: initialise with each of embed.auto.methods, keep the best step-0 score under the "
               "English limit")


@embed_app.command("init")
def init(
    model: ModelOpt,
    tokenizer: TokenizerOpt,
    out: Annotated[Path, typer.Option("--out", help="Output model folder (must not exist yet).")],
    method: Annotated[
        str, typer.Option("--method", help="Init method, or auto (`langadapt embed methods` lists them).")
    ] = "mean",
    corpus: CorpusOpt = None,
    english: EnglishOpt = None,
    text_field: FieldOpt = "text",
    english_field: EnglishFieldOpt = "text",
    options: OptionsOpt = None,
    calibrate_output: CalibrateOpt = False,
    calibration: CalibrationOpt = None,
    base_tokenizer: BaseTokOpt = None,
    seed: SeedOpt = 42,
    trust_remote_code: RemoteOpt = False,
) -> None:
    """Write an HF model folder whose vocabulary is the new tokenizer's (manifest.json holds the counts)."""
    from langadapt.embeddings.registry import AUTO
    from langadapt.embeddings.surgery import embed_model
    from langadapt.runstore import MANIFEST, library_versions, staged_output, write_json

    config = _config(method, options, calibrate_output, calibration=calibration)
    texts = _corpus(corpus, english, text_field, english_field, config.auto.documents if method == AUTO else 0)
    with staged_output(out) as tmp:
        metrics = embed_model(model, tokenizer, tmp, config, base_tokenizer=base_tokenizer, seed=seed,
                              trust_remote_code=trust_remote_code, corpus=texts)
        manifest = {"command": "embed init", "model": model, "tokenizer": str(tokenizer), "seed": seed,
                    "config": config.model_dump(mode="json"), "metrics": metrics, "versions": library_versions()}
        write_json(tmp / MANIFEST, manifest)
    typer.echo(f"{metrics['method']}: {metrics['new_rows']} new rows ({metrics['fallback_rows']} fallback), "
               f"{metrics['kept_rows']} kept → {out}")


@embed_app.command("probe")
def probe(
    model: ModelOpt,
    tokenizer: TokenizerOpt,
    corpus: CorpusOpt = None,
    english: EnglishOpt = None,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated methods to compare.")
    ] = "mean,convex,distill",
    text_field: FieldOpt = "text",
    english_field: EnglishFieldOpt = "text",
    documents: Annotated[int, typer.Option("--documents", help="Held-out documents scored per side.")] = 32,
    english_limit: Annotated[
        float, typer.Option("--english-limit", help="Largest English bits/char regression.")
    ] = 0.01,
    options: OptionsOpt = None,
    calibrate_output: CalibrateOpt = False,
    calibration: CalibrationOpt = None,
    base_tokenizer: BaseTokOpt = None,
    seed: SeedOpt = 42,
    trust_remote_code: RemoteOpt = False,
) -> None:
    """Initialise with each method, score step-0 bits/char on held-out corpus documents, print the table (JSON)."""
    from langadapt.embeddings.surgery import resize_to_tokenizer
    from langadapt.models import load_model, load_tokenizer
    from langadapt.vocab.token_map import TokenMap

    config = _config("auto", options, calibrate_output, methods, english_limit, documents, calibration)
    texts = _corpus(corpus, english, text_field, english_field, documents)
    token_map = TokenMap.load(tokenizer)
    old_tokenizer = load_tokenizer(base_tokenizer or model, trust_remote_code=trust_remote_code)
    new_tokenizer = load_tokenizer(tokenizer, trust_remote_code=trust_remote_code)
    lm = load_model(model, dtype="auto", trust_remote_code=trust_remote_code)
    metrics = resize_to_tokenizer(lm, old_tokenizer, new_tokenizer, token_map, config, seed=seed, corpus=texts)
    typer.echo(json.dumps(metrics["probe"], indent=2, ensure_ascii=False))
