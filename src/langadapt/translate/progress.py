"""The translation progress bar: segments done, segments/s and time left, on stderr when it is a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _SegmentsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} seg/s" if speed else "– seg/s")


@contextlib.contextmanager
def segment_progress(total: int, label: str, *, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """A bar over `total` segments; yields the function that advances it by one."""
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _SegmentsPerSecond(),
                        TimeRemainingColumn(), console=console, disable=not (enabled and console.is_terminal),
                        transient=True)
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda: progress.advance(task)
