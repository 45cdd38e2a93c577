"""``train.init_from``: a run starts from another run's weights (fine-tuning, recovering a
pruned model) with a fresh optimizer and step count; bad sources are one line, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deepseek.errors import CheckpointError, ConfigError
from deepseek.training.checkpoint import export_weights, load_model_state, resolve_checkpoint
from deepseek.training.trainer import Trainer


def test_a_run_starts_from_the_source_weights(tiny_config, tmp_path: Path) -> None:
    source = Trainer(tiny_config(train={"max_steps": 4}), run_dir=tmp_path / "a").fit()
    weights = load_model_state(resolve_checkpoint(source.run_dir))
    for init in (str(source.run_dir), str(export_weights(source.run_dir, tmp_path / "a.safetensors"))):
        config = tiny_config(train={"max_steps": 1, "init_from": init, "seed": 7})
        trainer = Trainer(config, run_dir=tmp_path / f"b{len(init)}")
        result = trainer.fit()
        # Step 0's evaluation is the source model's last one: the same weights, the same batches.
        assert result.val_losses[0] == (0, pytest.approx(source.val_losses[-1][1], rel=1e-6))
        assert result.step == 1  # a fresh step count
    random = Trainer(tiny_config(train={"max_steps": 1, "seed": 7}), run_dir=tmp_path / "c").fit()
    assert random.val_losses[0][1] != pytest.approx(source.val_losses[-1][1], rel=1e-3)
    assert weights  # the source's checkpoint is untouched by the runs that read it
    assert all(torch.equal(v, load_model_state(resolve_checkpoint(source.run_dir))[k]) for k, v in weights.items())


def test_weights_of_another_shape_are_one_line_and_nothing_is_written(tiny_config, tmp_path: Path) -> None:
    source = Trainer(tiny_config(train={"max_steps": 2}), run_dir=tmp_path / "a").fit()
    config = tiny_config(model={"d_model": 64}, train={"init_from": str(source.run_dir)})
    with pytest.raises(CheckpointError, match="weights do not fit this model"):
        Trainer(config, run_dir=tmp_path / "b").fit()
    assert not (tmp_path / "b" / "checkpoints").exists()


def test_a_missing_source_is_a_config_error(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.init_from: no such run folder"):
        tiny_config(train={"init_from": str(tmp_path / "nothing")})
