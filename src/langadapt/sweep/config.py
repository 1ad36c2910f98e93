"""The `sweep:` config section: alternatives for any config keys, run as variants of one comparison."""

from __future__ import annotations

import re

from pydantic import Field, JsonValue, field_validator, model_validator

from langadapt.schema import Section

NAME = re.compile(r"^[A-Za-z0-9._-]+$")
Overrides = dict[str, JsonValue]  # dotted config key -> the value a variant gives it


class SweepConfig(Section):
    """`grid`: the product of every key's values; `variants`: named variants, each a set of overrides. Both
    may be given (the grid's variants first). A value replaces the key's value in the rest of the config."""

    grid: dict[str, list[JsonValue] | dict[str, JsonValue]] = Field(
        default_factory=dict,
        description="dotted key -> a list of values, or a mapping label -> value (the label names the variant)",
    )
    variants: dict[str, Overrides] = Field(
        default_factory=dict, description="variant name -> {dotted key: value}; {} is the config as it stands",
    )

    @field_validator("grid")
    @classmethod
    def _values_given(cls, grid: dict[str, list[JsonValue] | dict[str, JsonValue]]) -> dict:
        for key, values in grid.items():
            if not values:
                raise ValueError(f"'{key}' lists no values — give at least one (or remove the key)")
            if isinstance(values, dict):
                bad = [label for label in values if not NAME.match(label)]
                if bad:
                    raise ValueError(f"'{key}': label {bad[0]!r} may hold only letters, digits, '.', '_', '-'")
        return grid

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, Overrides]) -> dict[str, Overrides]:
        bad = [name for name in variants if not NAME.match(name)]
        if bad:
            raise ValueError(f"variant name {bad[0]!r} may hold only letters, digits, '.', '_', '-'")
        return variants

    @model_validator(mode="after")
    def _something_to_run(self) -> SweepConfig:
        if not self.grid and not self.variants:
            raise ValueError("a sweep needs 'grid' (keys with lists of values) or 'variants' (named overrides)")
        return self
