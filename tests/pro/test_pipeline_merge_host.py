"""Pipeline's rank 0 merges the stages' part files into the canonical checkpoint files, reading
each part's optimizer groups back as every load does: held to the hyper-parameter types of the
optimizer the checkpoint's ``trainer.json`` names, looked up on the run's plugin host (the one the
strategy was given), not the process's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _prohelpers import core_test_module

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek_pro.strategies import pipeline_state as pstate

shared = core_test_module("_negative_momentum")   # tests/core/_negative_momentum.py


def _parts(directory: Path) -> None:
    """Two stages' parts as pipeline writes them, then trainer.json naming the plugin's optimizer."""
    for stage, name in enumerate(("a.weight", "b.weight")):
        ckpt.save_model_state(pstate.part_path(directory, stage, ckpt.MODEL_FILE), {name: torch.ones(2)})
        group = {"params": [name], "lr": 0.1, "momentum": -0.5, "weight_decay": 0.0}
        ckpt.save_optimizer_state(pstate.part_path(directory, stage, ckpt.OPTIMIZER_FILE),
                                  {"state": {}, "param_groups": [group]})
    (directory / ckpt.TRAINER_FILE).write_text(json.dumps({"config": {"optimizer": {"name": shared.OPTIMIZER}}}))


def test_merge_holds_the_parts_groups_to_the_optimizer_on_the_runs_host(tmp_path: Path) -> None:
    host = shared.registered()
    _parts(tmp_path)
    pstate.merge_parts(tmp_path, 2, host)
    merged = ckpt.load_optimizer_state(tmp_path / ckpt.OPTIMIZER_FILE, host=host)
    assert [g["params"] for g in merged["param_groups"]] == [["a.weight", "b.weight"]]
    assert merged["param_groups"][0]["momentum"] == -0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.TRAINER_FILE]

    # the process's host does not know the name: momentum is held >= 0 there, and the save fails
    again = tmp_path / "again"
    again.mkdir()
    _parts(again)
    with pytest.raises(CheckpointError, match=shared.DAMAGED):
        pstate.merge_parts(again, 2)
