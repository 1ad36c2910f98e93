"""The `eval:` config section (filled by the evaluation issue)."""

from __future__ import annotations

from langadapt.schema import Section


class EvalConfig(Section):
    """Which models to evaluate on which tasks."""
