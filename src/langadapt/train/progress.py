"""What a training run shows and says: progress with tokens/s and ETA, the loss curve for the manifest, and
one-line errors for a diverged loss or out-of-memory that name the knobs to turn (CPT, SFT and DPO alike)."""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import ProgressCallback

from langadapt.errors import LangadaptError
from langadapt.train.common import NonFiniteLoss, checkpoint_step, last_complete_checkpoint

if TYPE_CHECKING:
    from langadapt.train.config import CptConfig, TuningConfig

log = logging.getLogger("langadapt.train")


class ThroughputProgress(ProgressCallback):
    """A progress bar (on a terminal) and a log line per logging step, with ETA and, when every step sees
    the same number of tokens (`tokens_per_step`; None where examples vary in length), tokens/s."""

    def __init__(self, tokens_per_step: int | None, logger: logging.Logger = log):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.logger = logger
        self.started = 0.0
        self.first_step = 0
        self.seconds = 0.0
        self.ended = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(
                total=state.max_steps, initial=state.global_step, dynamic_ncols=True, unit="step",
                disable=not sys.stderr.isatty(),
            )
        self.current_step = state.global_step
        self.first_step = state.global_step
        self.started = time.perf_counter()

    def tokens_per_second(self, state: Any) -> float:
        """Tokens per second of this session (a resumed run counts from where it resumed)."""
        if not self.ended:
            self.seconds = time.perf_counter() - self.started
        steps = state.global_step - self.first_step
        if self.tokens_per_step is None:
            return math.nan
        return steps * self.tokens_per_step / self.seconds if self.seconds > 0 else 0.0

    def eta_seconds(self, state: Any) -> float:
        steps = state.global_step - self.first_step
        if steps <= 0:
            return math.nan
        return (state.max_steps - state.global_step) * (time.perf_counter() - self.started) / steps

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_step_end(args, state, control, **kwargs)
        if self.tokens_per_step is not None and state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.set_postfix_str(f"{self.tokens_per_second(state):,.0f} tok/s", refresh=False)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        throughput = f"  {self.tokens_per_second(state):,.0f} tok/s" if self.tokens_per_step is not None else ""
        self.logger.info(
            "step %d/%d  loss %.4f  lr %.3g%s  ETA %s",
            state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", math.nan), throughput,
            format_seconds(self.eta_seconds(state)),
        )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tokens_per_second(state)
        self.ended = True  # `seconds` stays the training time
        super().on_train_end(args, state, control, **kwargs)


def format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def loss_curve(log_history: list[dict[str, Any]], max_points: int = 500) -> list[dict[str, float]]:
    """The logged training losses as [{step, loss, lr, grad_norm}], thinned evenly to at most `max_points`."""
    points = [
        {
            "step": entry["step"],
            "loss": round(float(entry["loss"]), 6),
            "lr": float(entry.get("learning_rate", math.nan)),
            "grad_norm": round(float(entry.get("grad_norm", math.nan)), 6),
        }
        for entry in log_history
        if "loss" in entry and "step" in entry
    ]
    if len(points) > max_points:
        stride = math.ceil(len(points) / max_points)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return points


def oom_advice(settings: CptConfig | TuningConfig, *, context_length: int) -> str:
    """The concrete knobs that lower memory, for the settings (cpt, sft or dpo) that ran out of it."""
    from langadapt.train.config import CptConfig

    cpt = isinstance(settings, CptConfig)  # cpt also has an embeddings-only mode and multi-GPU launch settings
    batch_size = settings.batch_size
    knobs = []
    if batch_size > 1:
        half = batch_size // 2
        knobs.append(
            f"batch_size {half} with gradient_accumulation_steps "
            f"{settings.gradient_accumulation_steps * batch_size // half} (same global batch)"
        )
    if not settings.gradient_checkpointing:
        knobs.append("gradient_checkpointing: true")
    if settings.mode == "full":
        lighter = "lora or embeddings" if cpt else "lora"
        knobs.append(f"mode: {lighter} (fewer trainable weights, much less optimizer state)")
    if cpt:
        knobs.append("several GPUs with launch.config_file configs/accelerate/deepspeed-zero3.yaml or fsdp.yaml")
    return (
        f"out of memory at batch_size {batch_size} × context {context_length} in mode {settings.mode} — try "
        + "; or ".join(knobs)
    )


@contextlib.contextmanager
def friendly_training_errors(checkpoints: Path, *, oom_hint: str) -> Iterator[None]:
    """Turn a diverged loss or an out-of-memory error into one line that says what to change."""
    try:
        yield
    except NonFiniteLoss as exc:
        last = last_complete_checkpoint(checkpoints)
        kept = (f"the last good checkpoint is step {checkpoint_step(last)} in {last}" if last
                else "no checkpoint had been written yet")
        raise LangadaptError(
            f"loss became {exc.value} at step {exc.step}, training stopped; {kept} — lower learning_rate "
            "(and embedding_lr), raise warmup_steps, keep max_grad_norm > 0, or use bf16/fp32 instead of fp16"
        ) from None
    except torch.OutOfMemoryError:
        raise LangadaptError(oom_hint) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise LangadaptError(oom_hint) from None
        raise
