"""``deepseek checkpoint export`` (``export_checkpoint(src, dst, host=...)``) reads a sharded
checkpoint on the command's host: its ``sharded.json`` groups held to the optimizer its
``trainer.json`` names as registered there, as the model check and the optimizer-state check that
follow already were, not on the process's host (where a plugin optimizer registered only in-process
is not installed, and its signed momentum read as damage)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _prohelpers import core_test_module

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek_pro.checkpoint import export_checkpoint

shared = core_test_module("_negative_momentum")   # tests/core/_negative_momentum.py

WEIGHTS = {"layer.weight": torch.arange(6.0).reshape(3, 2), "layer.bias": torch.tensor([0.5, -1.0, 0.25])}


def test_a_sharded_checkpoint_is_exported_on_the_host_passed_in(tmp_path: Path) -> None:
    host = shared.registered()
    source = shared.write_sharded(tmp_path / "step-1", WEIGHTS, {"model": {"name": shared.MODEL}})
    out = export_checkpoint(source, tmp_path / "exported", host=host)
    assert ckpt.layout_of(out) == "full"
    model, optim = ckpt.read_full_state(out, host)
    assert set(model) == set(WEIGHTS) and all(torch.equal(model[k], v) for k, v in WEIGHTS.items())
    assert optim["param_groups"][0]["momentum"] == -0.5
    with pytest.raises(CheckpointError, match=shared.DAMAGED):
        export_checkpoint(source, tmp_path / "other")   # the process's host: the name is not installed there
    assert not (tmp_path / "other").exists()
