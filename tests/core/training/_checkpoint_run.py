"""The 6-step run of the checkpoint tests (test_checkpoint_crash.py, test_checkpoint_damage.py):
a checkpoint every 2 steps, the last one kept."""

from __future__ import annotations

RUN = {
    "model": {"dropout": 0.1},
    "train": {"max_steps": 6, "decay_steps": 6, "warmup_steps": 2},
    "checkpoint": {"interval": 2, "keep_last": 1},
}
