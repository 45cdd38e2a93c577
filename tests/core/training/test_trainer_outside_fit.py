"""The trainer's own public calls that reach the model (``evaluate``, ``save_checkpoint``) ask the strategy first
(:func:`deepseek.training.strategy.held_strategy`): before ``fit`` there is none (was an AttributeError on
``trainer.engine`` and a bare assert), and core's ``Strategy.engine_held`` refuses nothing, so under ``single`` they
still answer after ``fit`` (a distributed strategy's refusal: tests/pro/test_released_engine.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.training.trainer import Trainer

CONFIG = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
    "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 1, "warmup_steps": 0, "eval_interval": 1},
    "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False},
}


def test_before_fit_each_call_is_one_line_naming_it(tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    for call, run in [("evaluate()", trainer.evaluate), ("save_checkpoint()", trainer.save_checkpoint)]:
        with pytest.raises(UsageError) as refused:
            run()
        assert str(refused.value) == (
            f"trainer.{call} before fit(): fit() sets up the strategy and the model; call it while fit() runs "
            "(from a deepseek_train_step_end or deepseek_train_end hook)")
    assert not (tmp_path / "run").exists()  # nothing made


def test_under_single_they_still_answer_after_fit(tmp_path: Path) -> None:
    trainer = Trainer(config_from_dict(CONFIG), run_dir=tmp_path / "run", quiet=True)
    trainer.fit()
    assert trainer.strategy is not None
    trainer.strategy.engine_held("trainer.evaluate()")  # core's default: nothing to refuse
    assert trainer.evaluate() == trainer.last_eval  # the trained model, evaluated again: the same numbers
