"""A checkpoint's ``powersgd-<rank>.safetensors`` read back like input: its metadata (settings,
iteration count, the random generator's state) is refused in one CheckpointError line naming
the file, whatever was written there (the commit record's checksums set aside: an edit on purpose)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepseek.errors import CheckpointError

DEEP = "[" * 5000 + "]" * 5000


def _tracker():  # noqa: ANN202 - a PowerSGDTracker of a one-process run, no process group needed
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

    from deepseek_pro.powersgd_state import PowerSGDTracker

    return PowerSGDTracker(PowerSGDState(process_group=None, matrix_approximation_rank=1, start_powerSGD_iter=2), [])


@pytest.mark.parametrize(("key", "value", "words"), [
    # Python's JSON parser recursed past the stack: RecursionError, an internal error
    ("settings", DEEP, "nested deeper than 64 levels"),
    ("rng", DEEP, "nested deeper than 64 levels"),
    # taken as they were: PowerSGD counted its iterations from -5, or from past any start_iter
    ("iter", "-5", "iter -5 is not a whole count of steps"),
    ("iter", str(10**30), "is not a whole count of steps"),
    # numpy took a position past its 624 words, a flag of 7 and a NaN Gaussian, and drew from them
    ("rng", json.dumps(["MT19937", 10**9, 0, 0.0]), "is not a random generator's state"),
    ("rng", json.dumps(["MT19937", 3, 7, 0.0]), "is not a random generator's state"),
    ("rng", json.dumps(["MT19937", 3, 1, float("nan")]), "is not a random generator's state"),
])
def test_a_tampered_powersgd_state_is_refused(tmp_path: Path, key: str, value: str, words: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    from deepseek_pro.powersgd_state import FILE

    _tracker().save(tmp_path, 0, 1)
    path = tmp_path / FILE.format(rank=0)
    with safe_open(str(path), "pt") as fh:
        meta, tensors = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    assert _tracker().restore(tmp_path, 0, 1)  # as written: taken
    save_file(tensors, str(path), metadata={**meta, key: value})
    tracker = _tracker()
    with pytest.raises(CheckpointError, match=rf"^{path}: PowerSGD state is corrupt \(.*{words}") as info:
        tracker.restore(tmp_path, 0, 1)
    assert "\n" not in str(info.value)
    assert tracker.state.iter == 0
