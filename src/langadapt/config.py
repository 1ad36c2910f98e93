"""The one run config: a YAML file validated by a strict pydantic schema.

A config names the run, where it writes, the models involved, the data, and one section per pipeline
stage; a stage runs when its section is present. Every problem is reported as one line naming the key
path and the fix, e.g. ``unknown key 'vocab.methd' — did you mean 'method'?``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from langadapt.data.config import DataConfig
from langadapt.errors import ConfigError
from langadapt.schema import InputPath, ModelRef, Section
from langadapt.sweep.config import SweepConfig


class ModelsConfig(Section):
    """The models of a run. `base` is what gets adapted; `instruct` is its chat sibling (LEP flow)."""

    base: ModelRef
    instruct: ModelRef | None = None
    tokenizer: ModelRef | None = Field(default=None, description="defaults to the base model's tokenizer")
    trust_remote_code: bool = False

    @property
    def base_tokenizer(self) -> str:
        return self.tokenizer or self.base

    def tokenizer_for(self, model: str) -> str:
        """The tokenizer of `model`: `tokenizer` (or the base's own) for the base, a model's own otherwise."""
        return self.base_tokenizer if model == self.base else model


class RunConfig(Section):
    """A whole run: its name, models and data, plus one section per registered stage (a stage whose section
    is left out, or null, is skipped). The stage sections are added by `pipeline.run_config_schema()` from
    the stages' own `config=` schemas, so a new stage brings its section with it."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    output_dir: InputPath
    seed: int = 42
    target_language: str = Field(description="ISO 639-1 code of the language being adapted to, e.g. 'eu'")
    models: ModelsConfig
    data: DataConfig
    sweep: SweepConfig | None = Field(default=None, description="variants of this config run as one comparison")

    @field_validator("target_language")
    @classmethod
    def _language_code(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z]{2,3}", value):
            raise ValueError(f"expects an ISO 639 language code such as 'eu', 'lt' or 'ru', got {value!r}")
        return value

    def section(self, name: str) -> Section | None:
        """A stage's section by name (None when it is not set or no such stage is registered)."""
        value = getattr(self, name, None)
        return value if isinstance(value, Section) else None


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a run config; relative paths are resolved against the config file's folder."""
    path = Path(path)
    return validate_config(read_config(path, overrides=overrides), base_dir=path.resolve().parent, source=str(path))


def read_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Any:
    """A config file's YAML, with top-level `overrides` applied, not yet validated."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist — check the path (e.g. examples/demo-eu.yaml)")
    if path.is_dir():
        raise ConfigError(f"config '{path}' is a folder — pass the YAML file inside it")
    data = read_yaml(path)
    if overrides and isinstance(data, dict):
        data.update(overrides)
    return data


def validate_config(data: Any, *, base_dir: Path, source: str = "config") -> RunConfig:
    """Validate an already-parsed config mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (name, output_dir, models, ...)")
    from langadapt.pipeline import run_config_schema

    _refuse_inline_secrets(data, source)
    schema = run_config_schema()
    try:
        return schema.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(describe_errors(exc, schema))) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"duplicate key '{key}' at line {key_node.start_mark.line + 1} — keep only one")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    """A YAML file; bad YAML, duplicate keys and non-UTF-8 text become one-line ConfigErrors."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem} — fix the indentation or quoting") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text — save the config as UTF-8") from None
    return {} if data is None else data


_SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{20,})$")


def _refuse_inline_secrets(data: Any, source: str, prefix: str = "") -> None:
    """Tokens and keys belong in the environment; a config (and so every manifest) must never hold one."""
    if isinstance(data, dict):
        for key, value in data.items():
            _refuse_inline_secrets(value, source, f"{prefix}{key}.")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            _refuse_inline_secrets(value, source, f"{prefix}{index}.")
    elif isinstance(data, str) and _SECRET_VALUE.match(data.strip()):
        raise ConfigError(
            f"{source}: '{prefix.rstrip('.')}' holds what looks like an access token — put it in an "
            "environment variable and name the variable in the config instead"
        )


# --------------------------------------------------------------------------------------------------------
# Turning pydantic's errors into one line each.
# --------------------------------------------------------------------------------------------------------

_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "list_type": "a list",
    "tuple_type": "a list",
    "path_type": "a path",
}


def describe_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """One readable line per validation error, naming the dotted key path."""
    lines = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
        key = ".".join(str(part) for part in loc) or "(top level)"
        kind = error["type"]
        got = error.get("input")
        if kind == "extra_forbidden":
            known = field_names(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            hint = f" — did you mean '{close[0]}'?" if close else (
                f" — known keys here: {', '.join(sorted(known))}" if known else " — remove it")
            lines.append(f"unknown key '{key}'{hint}")
        elif kind == "missing":
            lines.append(f"missing key '{key}' — add it")
        elif kind == "too_short":
            lines.append(f"'{key}' needs at least {error['ctx']['min_length']} item(s), got {_show(got)}")
        elif kind in _EXPECTED:
            lines.append(f"'{key}' expects {_EXPECTED[kind]}, got {_show(got)}")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {message[0].lower() + message[1:]} (got {_show(got)})")
    return lines


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's name (e.g. 'VocabConfig' or 'function-after[...]') into the location.
    return isinstance(part, str) and (part[:1].isupper() or "[" in part)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def field_names(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at `loc` inside `root`, used to suggest a correction for a typo."""
    current: Any = root
    for part in loc:
        model = _model_in(current)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            current = model.model_fields[part].annotation
        else:  # a key of a mapping or an index of a list: step into the item type
            args = typing.get_args(_without_none(current))
            current = args[-1] if args else None
    model = _model_in(current)
    return list(model.model_fields) if model is not None else []


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        for arg in typing.get_args(annotation):
            model = _model_in(arg)
            if model is not None:
                return model
    return None
