"""What the portable-checkpoint tests (test_checkpoint.py, test_checkpoint_core_alone.py) check a
resumed run against: the uninterrupted ``single`` reference run's checkpoint at a step, its
weights and AdamW moments, and the tolerances.

Tolerance: each hop is exact up to the float32 summation order of the data-parallel gradient
reduction (see test_ddp): 1e-5 relative on losses, 1e-5 absolute on weights and moments after
up to ten AdamW steps.
"""

from __future__ import annotations

from pathlib import Path

import torch

from deepseek.training.checkpoint import read_full_state

RTOL = 1e-5
ATOL = 1e-5


def ref_checkpoint(single_reference: dict, step: int) -> Path:
    """The reference run's checkpoint at ``step``."""
    return single_reference["dir"] / "checkpoints" / f"step-{step}"


def assert_same_state(directory: Path, reference: Path) -> None:
    """Checkpoint ``directory`` holds the weights and optimizer state of ``reference``, within ``ATOL``."""
    model, optim = read_full_state(directory)
    ref_model, ref_optim = read_full_state(reference)
    assert set(model) == set(ref_model)
    for key, value in ref_model.items():
        torch.testing.assert_close(model[key], value, rtol=0, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}")
    assert set(optim["state"]) == set(ref_optim["state"])
    for name, values in ref_optim["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(optim["state"][name][key].float(), value.float(), rtol=0, atol=ATOL,
                                       msg=lambda m, n=name, k=key: f"{n}/{k}: {m}")
