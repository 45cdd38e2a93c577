"""``checkpoint.keep_best`` and early stopping on ``train.monitor``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import ConfigError, RunComplete
from deepseek.training import checkpoint as ckpt
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


def _evals(run: Path) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in read_metrics(run / "metrics.jsonl") if "val_loss" in r}


def test_keep_best_keeps_the_best_evaluation_beside_the_newest(tiny_config: Any, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 8, "eval_interval": 2}, checkpoint={"keep_best": True, "keep_last": 1})
    result = Trainer(config, run_dir=tmp_path / "run").fit()
    evals = _evals(result.run_dir)
    best_step = min((s for s in evals if s > 0), key=lambda s: evals[s])
    root = result.run_dir / "checkpoints"
    assert (root / ckpt.BEST_FILE).read_text().strip() == f"step-{best_step}"
    assert ckpt.resolve_checkpoint(root / ckpt.BEST_FILE) == root / f"step-{best_step}"
    kept = sorted(p.name for p in root.glob("step-*"))
    assert kept == sorted({f"step-{best_step}", "step-8"})  # keep_last=1 pruned the others
    assert result.best_checkpoint == root / f"step-{best_step}" and result.monitor["best"] == evals[best_step]


def test_early_stopping_after_patience_and_the_count_survives_resume(tiny_config: Any, tmp_path: Path) -> None:
    # "max" on a falling loss: every evaluation after step 0 fails to improve.
    train = {"max_steps": 12, "eval_interval": 2, "monitor_mode": "max", "early_stop_patience": 3}
    result = Trainer(tiny_config(train=train), run_dir=tmp_path / "run").fit()
    assert result.step == 6  # evaluations at 2, 4, 6 without improvement
    assert result.monitor["stale"] == 3 and result.monitor["best_step"] == 0
    state = json.loads((result.run_dir / "checkpoints" / "step-6" / "trainer.json").read_text())
    assert state["monitor"]["stale"] == 3
    part = Trainer(tiny_config(train={**train, "max_steps": 4}), run_dir=tmp_path / "part").fit()
    resumed = Trainer(tiny_config(train=train), resume=part.checkpoint).fit()
    assert resumed.step == 6 and resumed.monitor["stale"] == 3  # 2 before the resume + 1 after
    # the run ended here: resuming it again would train a step the uninterrupted run never took
    with pytest.raises(RunComplete, match=r"^resume='.*step-6': the run is complete, it stopped early at step 6 "
                       r"\(early stopping: val_loss did not improve .*\); nothing to train \(raise "
                       r"train\.early_stop_patience, 0: never, to train further\)$"):
        Trainer(tiny_config(train=train), resume=resumed.run_dir).fit()
    assert read_metrics(resumed.run_dir / "metrics.jsonl")[-1]["step"] == 6  # nothing written


def test_a_resumed_run_keeps_naming_its_best_checkpoint(tiny_config: Any, tmp_path: Path) -> None:
    """The best checkpoint written before a resume is still the run's best after it (the summary's
    'best checkpoint' line and TrainResult.best_checkpoint were empty when no later one improved)."""
    train = {"max_steps": 4, "eval_interval": 2, "decay_steps": 8}
    half = Trainer(tiny_config(train=train, checkpoint={"keep_best": True}), run_dir=tmp_path / "run").fit()
    assert half.best_checkpoint is not None and half.best_checkpoint.name == "step-4"
    # nothing after the resume improves by more than 10: the best stays the one of step 4
    resumed = Trainer(tiny_config(train={**train, "max_steps": 6, "early_stop_min_delta": 10.0},
                                  checkpoint={"keep_best": True}), resume=half.run_dir).fit()
    assert resumed.step == 6 and resumed.best_checkpoint == half.best_checkpoint


def test_monitor_must_name_an_evaluation_value(tiny_config: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^train\.monitor: must name an evaluation value such as 'val_loss', got 'loss'"):
        tiny_config(train={"monitor": "loss"})
    config = tiny_config(train={"monitor": "val_accuracy"})
    with pytest.raises(ConfigError, match=r"^train\.monitor: 'val_accuracy' is not an evaluation value of this run; "
                       r"it reports val_bits_per_byte, val_loss$"):
        Trainer(config, run_dir=tmp_path / "run").fit()
