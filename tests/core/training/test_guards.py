"""Training that goes wrong: ``train.on_nonfinite`` (stop / skip / continue) and checkpoints of
non-finite weights, which are never written. A NaN is injected into one step's loss by an
in-process plugin (a forward hook on the model), the way a diverging run produces one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import TrainingDivergedError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


class PoisonStep:
    """Makes the loss of step ``at`` NaN, by multiplying it with NaN or (``weights``) by filling
    one weight with NaN after the step before, and keeps a copy of the weights after every step."""

    def __init__(self, at: int, weights: bool = False) -> None:
        self.at, self.weights = at, weights
        self.after: dict[int, list[torch.Tensor]] = {}

    @hookimpl
    def deepseek_train_start(self, trainer: Any) -> None:
        def hook(module: Any, args: Any, kwargs: Any, out: torch.Tensor) -> torch.Tensor:
            if module.training and trainer.step + 1 == self.at and not self.weights:
                return out * float("nan")
            return out

        trainer.model.register_forward_hook(hook, with_kwargs=True)

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if self.weights and step + 1 == self.at:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))
        self.after[step] = [p.detach().clone() for p in trainer.model.parameters()]


def _fit(config: Any, run_dir: Path, poison: PoisonStep, resume: Path | None = None) -> Any:
    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(poison, dist="deepseek-poison")
    return Trainer(config, run_dir=run_dir, host=host, resume=resume).fit()


def test_stop_names_the_step_and_writes_no_checkpoint(tiny_config: Any, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 4}, checkpoint={"interval": 1})
    with pytest.raises(TrainingDivergedError, match=r"^training diverged: the loss is nan at step 3 \(train\.lr=0\.003\); "
                       r"lower train\.lr .*train\.on_nonfinite = 'skip'"):
        _fit(config, tmp_path / "run", PoisonStep(at=3))
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert steps == ["step-1", "step-2"]  # nothing after the bad step
    records = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3] and records[-1]["loss"] != records[-1]["loss"]


def test_skip_drops_the_step_and_training_goes_on(tiny_config: Any, tmp_path: Path) -> None:
    poison = PoisonStep(at=2)
    result = _fit(tiny_config(train={"max_steps": 4, "on_nonfinite": "skip"}), tmp_path / "run", poison)
    records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["skipped"] for r in records] == [0, 1, 0, 0]
    for a, b in zip(poison.after[1], poison.after[2], strict=True):
        assert torch.equal(a, b)  # step 2 changed nothing
    assert all(torch.isfinite(p).all() for p in poison.after[4])
    assert result.checkpoint is not None and result.losses[-1] == result.losses[-1]


def test_continue_never_writes_non_finite_weights(tiny_config: Any, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 3, "on_nonfinite": "continue"})
    with pytest.warns(RuntimeWarning, match=r"weights are not finite at step 3; the checkpoint of this step is not written"):
        result = _fit(config, tmp_path / "run", PoisonStep(at=2, weights=True))
    assert result.step == 3 and result.checkpoint is None
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").glob("step-*"))


def test_skip_still_refuses_a_checkpoint_of_non_finite_weights(tiny_config: Any, tmp_path: Path) -> None:
    # The loss of step 2 is NaN, but the weights go bad in the forward: with skip the step is
    # dropped, yet the weights are already NaN, so the end-of-run checkpoint is refused.
    config = tiny_config(train={"max_steps": 2, "on_nonfinite": "skip"})
    with pytest.warns(RuntimeWarning, match="weights are not finite at step 2"):
        result = _fit(config, tmp_path / "run", PoisonStep(at=2, weights=True))
    assert result.checkpoint is None


def test_a_non_finite_first_step_blames_the_data_or_model_not_the_learning_rate(
        tiny_config: Any, tmp_path: Path) -> None:
    # No update has run before step 1, so "lower train.lr" would send the user the wrong way.
    with pytest.raises(TrainingDivergedError, match=r"^the loss is nan at step 1, the run's first step, before "
                       r"any update: .*the data or the model's forward gives it .*not train\.lr") as caught:
        _fit(tiny_config(train={"max_steps": 3}), tmp_path / "run", PoisonStep(at=1))
    assert "lower train.lr" not in str(caught.value)


def test_the_first_step_after_a_resume_is_the_runs_first_step_too(tiny_config: Any, tmp_path: Path) -> None:
    _fit(tiny_config(train={"max_steps": 2}), tmp_path / "run", PoisonStep(at=99))
    config = tiny_config(train={"max_steps": 4})
    with pytest.raises(TrainingDivergedError, match=r"^the loss is nan at step 3, the run's first step"):
        _fit(config, tmp_path / "run", PoisonStep(at=3), resume=tmp_path / "run")
    with pytest.raises(TrainingDivergedError, match=r"^training diverged: the loss is nan at step 4 "):
        _fit(config, tmp_path / "run", PoisonStep(at=4), resume=tmp_path / "run")


@pytest.mark.parametrize(("sections", "values", "remedy"), [
    # weight_decay 50 (within its bound) and a group's lr_scale 50 at the default train.lr: the line
    # named only train.lr, which the config never changed
    ({"optimizer": {"weight_decay": 50.0, "groups": [{"match": "wte.*", "lr_scale": 50.0}]}},
     "optimizer.weight_decay=50, optimizer.groups.0.lr_scale=50",
     "lower optimizer.weight_decay or lower optimizer.groups.0.lr_scale or raise train.warmup_steps"),
    ({"optimizer": {"eps": 1e-30, "groups": [{"match": "wte.*", "lr_scale": 0.5, "weight_decay": 5.0}]}},
     "optimizer.groups.0.weight_decay=5, optimizer.eps=1e-30",
     "lower optimizer.groups.0.weight_decay or raise optimizer.eps or raise train.warmup_steps"),
    ({"train": {"lr": 0.5}, "optimizer": {"weight_decay": 0.0}}, "train.lr=0.5", "lower train.lr or raise"),
    ({}, "train.lr=0.002", "lower train.lr or raise train.warmup_steps"),  # nothing moved: the usual cause
], ids=["weight decay and lr_scale", "group decay and eps", "lr", "defaults"])
def test_a_divergence_names_the_settings_the_config_moved(tiny_config: Any, sections: dict[str, Any], values: str,
                                                          remedy: str) -> None:
    from deepseek.training.guards import check_steps

    config = tiny_config(**{"train": {"lr": 2e-3}, **sections})  # train.lr's default unless a case sets it
    record = {"step": 3, "loss": float("nan"), "grad_norm": 1.0}
    with pytest.raises(TrainingDivergedError) as caught:
        check_steps([record], config, first_step=1)
    line = str(caught.value)
    assert line.startswith(f"training diverged: the loss is nan at step 3 ({values}); {remedy}") and "\n" not in line
    if "train.lr" not in values:
        assert "train.lr" not in line
