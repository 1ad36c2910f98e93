"""The `report:` config section."""

from __future__ import annotations

from pydantic import Field

from langadapt.schema import InputPath, Section


class ReportConfig(Section):
    """The HTML report comparing the models of this run, and optionally other runs (variants)."""

    title: str | None = Field(default=None, description="page title (default: 'langadapt report — <name>')")
    compare_runs: list[InputPath] = Field(
        default_factory=list, description="output_dir of other runs whose evaluation tables are shown side by side"
    )
