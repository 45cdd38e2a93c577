"""``load_into_model`` takes what every other loader takes: a weights file, a checkpoint folder, a
``checkpoints`` folder or a run folder (the newest complete checkpoint), not only the first two."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import deepseek
from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.trainer import Trainer


def test_a_run_folder_loads_its_newest_checkpoint(tiny_config, tmp_path: Path) -> None:  # noqa: ANN001
    config = tiny_config(train={"max_steps": 3}, checkpoint={"interval": 1, "keep_last": 2})
    run = Trainer(config, run_dir=tmp_path / "run").fit().run_dir
    newest = ckpt.load_model_state(run / "checkpoints" / "step-3")
    for where in (run, run / "checkpoints", run / "checkpoints" / "step-3", run / "checkpoints" / "step-3" / ckpt.MODEL_FILE):
        model = deepseek.create_model(config.model.name, **vars(config.model.options))
        ckpt.load_into_model(model, where)
        for name, value in model.state_dict().items():
            assert torch.equal(value, newest[name]), (where, name)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        ckpt.load_into_model(model, tmp_path / "empty")
