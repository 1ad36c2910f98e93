"""The `report:` config section."""

from __future__ import annotations

from langadapt.schema import Section


class ReportConfig(Section):
    """The HTML report comparing variants."""
