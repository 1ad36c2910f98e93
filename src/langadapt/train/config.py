"""The `cpt:`, `sft:` and `dpo:` config sections (filled by the training issues)."""

from __future__ import annotations

from langadapt.schema import Section


class CptConfig(Section):
    """Continued pre-training."""


# ---------------------------------------------------------------------------------------------------------
# Instruction tuning and preference alignment.
# ---------------------------------------------------------------------------------------------------------


class SftConfig(Section):
    """Instruction tuning / calibration."""


class DpoConfig(Section):
    """Preference alignment."""
