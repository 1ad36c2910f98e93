"""The training sections refuse keys they would accept and silently ignore."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from langadapt.train.config import CptConfig


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"schedule": "cosine", "decay_ratio": 0.2}, "'decay_ratio' only applies to schedule 'wsd', not 'cosine'"),
        ({"schedule": "constant", "decay_ratio": 0.2}, "'decay_ratio' only applies to schedule 'wsd'"),
        ({"schedule": "constant", "min_lr_ratio": 0.1}, "'min_lr_ratio' does not apply to schedule 'constant'"),
    ],
)
def test_ignored_schedule_keys_are_refused(section: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        CptConfig(**section)


def test_schedule_keys_where_they_apply_are_accepted() -> None:
    assert CptConfig(schedule="wsd", decay_ratio=0.2, min_lr_ratio=0.1).decay_ratio == 0.2
    assert CptConfig(schedule="cosine", min_lr_ratio=0.1).min_lr_ratio == 0.1
    assert CptConfig(schedule="constant").decay_ratio == 0.1  # defaults are not "set"
