"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    """``lr`` rises linearly over ``warmup_steps`` (step 1 gets ``lr / warmup_steps``), then
    follows a half cosine from ``lr`` down to ``min_lr`` at ``decay_steps``; ``min_lr`` after.

    Steps count from 1 (the first optimizer step). The schedule is a pure function of the step,
    so resuming needs only the step number.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    decay_steps: int

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if step >= self.decay_steps:
            return self.min_lr
        span = max(self.decay_steps - self.warmup_steps, 1)
        progress = (step - self.warmup_steps) / span
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def state_dict(self) -> dict[str, float]:
        """The schedule's parameters (recorded in ``trainer.json``)."""
        return {
            "lr": self.lr,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
        }
