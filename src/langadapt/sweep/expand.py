"""A sweep config → its variants: named, each a whole run config, every one validated before anything runs.

A variant is the config with its `sweep:` section removed and its overrides applied (a value replaces the
key's value), written to `<output_dir>/variants/<name>/`. Grid variants are named from their values in the
grid's key order (`vocab-optimized_lep-swap`: a key is labelled by its section when that is unambiguous,
else by its dotted path); explicit variants keep their names.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, JsonValue

from langadapt.config import RunConfig, field_names, read_config, validate_config
from langadapt.errors import ConfigError, LangadaptError
from langadapt.runstore import stable_hash
from langadapt.sweep.config import Overrides, SweepConfig

if TYPE_CHECKING:
    from langadapt.pipeline import Stage

VARIANTS_DIR = "variants"
RESERVED = ("name", "output_dir", "sweep")  # set by the sweep itself
MAX_LABEL = 40


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: Overrides
    cfg: RunConfig
    labels: dict[str, str]  # swept key -> how the comparison table shows its value


@dataclass(frozen=True)
class Sweep:
    """A loaded config: `base` as written, and its variants (none when it has no sweep section)."""

    base: RunConfig
    source: str
    variants: list[Variant]

    @property
    def root(self) -> Path:
        return Path(self.base.output_dir)

    @property
    def runs(self) -> list[RunConfig]:
        """What `langadapt run` executes: the variants, or the config itself."""
        return [v.cfg for v in self.variants] or [self.base]


def load_sweep(path: str | Path, *, overrides: dict[str, Any] | None = None) -> Sweep:
    """Read a config; when it has a `sweep:` section, expand and validate every variant (errors name it)."""
    path = Path(path)
    data = read_config(path, overrides=overrides)
    base = validate_config(data, base_dir=path.resolve().parent, source=str(path))
    if base.sweep is None:
        return Sweep(base, str(path), [])
    return Sweep(base, str(path), expand(data, base, base_dir=path.resolve().parent, source=str(path)))


def expand(data: dict[str, Any], base: RunConfig, *, base_dir: Path, source: str) -> list[Variant]:
    sweep = base.sweep
    assert isinstance(sweep, SweepConfig)
    schema = type(base)
    for key in sweep.grid:
        check_key(key, schema, f"{source}: sweep.grid")
    for name, overrides in sweep.variants.items():
        for key in overrides:
            check_key(key, schema, f"{source}: sweep.variants.{name}")
    named = grid_variants(sweep.grid)
    clash = sorted({name for name, _, _ in named} & set(sweep.variants))
    if clash:
        raise ConfigError(f"{source}: sweep.variants.{clash[0]} has the name of a grid variant — rename it")
    named += [(name, overrides, {k: shown(v) for k, v in overrides.items()})
              for name, overrides in sweep.variants.items()]

    variants, errors = [], []
    for name, overrides, labels in named:
        variant_data = with_overrides(data, overrides, source)
        variant_data.update(name=f"{base.name}.{name}", output_dir=str(Path(base.output_dir) / VARIANTS_DIR / name))
        try:
            cfg = validate_config(variant_data, base_dir=base_dir, source=f"variant '{name}'")
            variants.append(Variant(name, overrides, cfg, labels))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(errors))
    return variants


def check_variants(variants: list[Variant], source: str) -> dict[str, list[Stage]]:
    """Every variant's plan and stage preflights (`langadapt validate`), by run name; all problems in one error."""
    from langadapt.pipeline import check

    planned: dict[str, list[Stage]] = {}
    failing: dict[str, list[str]] = {}  # message -> the variants it is about (a shared problem said once)
    for variant in variants:
        try:
            planned[variant.cfg.name] = check(variant.cfg)
        except LangadaptError as exc:
            failing.setdefault(str(exc), []).append(variant.name)
    if failing:
        names = {message: ", ".join(f"'{n}'" for n in names) for message, names in failing.items()}
        raise LangadaptError(f"{source}: " + "; ".join(
            f"{'all variants' if len(failing[m]) == len(variants) > 1 else 'variant ' + names[m]}: {m}"
            for m in failing))
    return planned


# --------------------------------------------------------------------------------------------------------
# Keys, names and overrides.
# --------------------------------------------------------------------------------------------------------


def check_key(key: str, schema: type[BaseModel], where: str) -> None:
    """A swept key must name a config field (did-you-mean otherwise); mapping keys below it are free."""
    parts = key.split(".")
    if parts[0] in RESERVED:
        raise ConfigError(f"{where}: '{key}' cannot be swept — each variant gets its own name and "
                          f"<output_dir>/{VARIANTS_DIR}/<name>")
    if not all(parts):
        raise ConfigError(f"{where}: '{key}' is not a dotted config key such as vocab.method")
    for depth, part in enumerate(parts):
        known = field_names(schema, tuple(parts[:depth]))
        if known and part not in known:
            close = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
            fixed = ".".join([*parts[:depth], close[0], *parts[depth + 1:]]) if close else ""
            hint = f"did you mean '{fixed}'?" if close else f"known keys here: {', '.join(sorted(known))}"
            raise ConfigError(f"{where}: unknown key '{key}' — {hint}")


def grid_variants(
    grid: dict[str, list[JsonValue] | dict[str, JsonValue]],
) -> list[tuple[str, Overrides, dict[str, str]]]:
    """The product of the grid's values in key order, each named from its values (unique, deterministic),
    with the label of each value (a mapping's own label, else the value as the table shows it)."""
    if not grid:
        return []
    keys = _key_labels(list(grid))
    choices = [[(label, value, label) for label, value in values.items()] if isinstance(values, dict)
               else [(value_label(v), v, shown(v)) for v in values] for values in grid.values()]
    named = []
    for combo in itertools.product(*choices):
        picked = dict(zip(grid, combo, strict=True))  # key -> (name part, value, label)
        named.append(("_".join(f"{keys[key]}-{part}" for key, (part, _, _) in picked.items()),
                      {key: value for key, (_, value, _) in picked.items()},
                      {key: label for key, (_, _, label) in picked.items()}))
    counts: dict[str, int] = {}
    for name, _, _ in named:
        counts[name] = counts.get(name, 0) + 1
    return [(f"{name}-{stable_hash(overrides)[:6]}" if counts[name] > 1 else name, overrides, labels)
            for name, overrides, labels in named]


def _key_labels(keys: list[str]) -> dict[str, str]:
    sections = [key.split(".")[0] for key in keys]
    return {key: section if sections.count(section) == 1 else key for key, section in zip(keys, sections, strict=True)}


def shown(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def value_label(value: JsonValue) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    text = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "empty"
    return text[:MAX_LABEL].rstrip("-")


def with_overrides(data: dict[str, Any], overrides: Overrides, source: str = "config") -> dict[str, Any]:
    """A copy of the config mapping without its sweep section, each dotted key set to its value."""
    out = copy.deepcopy(data)
    out.pop("sweep", None)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parents[: depth + 1])
                raise ConfigError(
                    f"{source}: sweep key '{key}': '{where}' is not a mapping — sweep '{where}' as a whole"
                )
            node = child
        node[leaf] = copy.deepcopy(value)
    return out
