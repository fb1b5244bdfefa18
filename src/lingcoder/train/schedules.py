"""Learning-rate schedules of a phase: warm-up, then constant / multi-step / cosine / inverse
square root / WSD, each going from `lr_start` to `lr_end` over the phase's steps (docs/training.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from lingcoder.errors import LingcoderError

ScheduleKind = Literal["constant", "multistep", "cosine", "inverse_sqrt", "wsd"]


@dataclass
class ScheduleConfig:
    kind: ScheduleKind = "cosine"
    lr_start: float = 3e-4
    lr_end: float = 3e-5
    warmup_steps: int = 0  # linear from 0 to lr_start
    # multistep: constant pieces, dropping by equal factors at these fractions of the phase so
    # that the last piece runs at lr_end (the paper's stage 1: 3e-4 -> 1.5e-4)
    milestones: list[float] = field(default_factory=lambda: [0.5])
    # wsd: stable at lr_start, then decay to lr_end over the last `decay_fraction` of the phase
    decay_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.lr_start < 0 or self.lr_end < 0:
            raise LingcoderError("schedule: learning rates must be >= 0")
        if self.kind == "multistep" and not self.milestones:
            raise LingcoderError("schedule: multistep needs at least one milestone")
        if not all(0 < m < 1 for m in self.milestones):
            raise LingcoderError(f"schedule.milestones must be fractions in (0, 1), got {self.milestones}")
        if self.kind == "inverse_sqrt" and self.lr_end <= 0:
            raise LingcoderError("schedule: inverse_sqrt needs lr_end > 0 (it ends the phase at lr_end)")
        if not 0 < self.decay_fraction <= 1:
            raise LingcoderError(f"schedule.decay_fraction must be in (0, 1], got {self.decay_fraction}")


def learning_rate(schedule: ScheduleConfig, step: int, total_steps: int) -> float:
    """LR at `step` (0-based) of a phase of `total_steps` steps; the last step gets the end value."""
    s = schedule
    if step < s.warmup_steps:
        return s.lr_start * (step + 1) / s.warmup_steps
    span = max(total_steps - s.warmup_steps - 1, 1)  # the phase's last step runs at lr_end
    progress = min((step - s.warmup_steps) / span, 1.0)
    if s.kind == "constant":
        return s.lr_start
    if s.kind == "multistep":
        drops = sum(progress >= m for m in s.milestones)
        return s.lr_start * (s.lr_end / s.lr_start) ** (drops / len(s.milestones)) if s.lr_start else 0.0
    if s.kind == "cosine":
        return s.lr_end + (s.lr_start - s.lr_end) * 0.5 * (1 + math.cos(math.pi * progress))
    if s.kind == "inverse_sqrt":
        # lr_start / sqrt(1 + a * progress), with `a` chosen so that the phase ends at lr_end.
        a = (s.lr_start / s.lr_end) ** 2 - 1
        return s.lr_start / math.sqrt(1 + a * progress)
    if s.kind == "wsd":
        decay_start = 1 - s.decay_fraction
        if progress <= decay_start:
            return s.lr_start
        return s.lr_start + (s.lr_end - s.lr_start) * (progress - decay_start) / s.decay_fraction
    raise LingcoderError(f"unknown schedule kind {s.kind!r}")
