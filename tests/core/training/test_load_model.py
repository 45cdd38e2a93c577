"""``deepseek.load_model``: the model a run trained, from the config it recorded, with the weights
of its newest complete checkpoint (or the checkpoint named), in eval mode; refusals as for eval."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import deepseek
from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.trainer import Trainer


def test_load_model_gives_the_trained_weights_in_eval_mode(tiny_config, tmp_path: Path) -> None:
    run = Trainer(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "run", quiet=True).fit().run_dir
    model = deepseek.load_model(run)
    assert isinstance(model, torch.nn.Module) and not model.training
    saved = ckpt.load_model_state(run / "checkpoints" / "step-2")
    live = model.state_dict()
    assert saved.keys() == live.keys() and all(torch.equal(saved[k], live[k]) for k in saved)
    tokens = torch.randint(0, 256, (1, 8))
    assert torch.equal(model(tokens), deepseek.load_model(run / "checkpoints" / "step-2")(tokens))


def test_load_model_refuses_what_holds_no_model(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no such checkpoint or run folder"):
        deepseek.load_model(tmp_path / "missing")
