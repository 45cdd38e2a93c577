"""Batched reads of the step metrics (``logging.every_n_steps``): one host sync per N steps,
every step still recorded, in order, and nothing lost when training stops early."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics, read_scalars
from deepseek.training.trainer import Trainer


class StepSpy:
    """Records ``(step, trainer.step)`` at every ``deepseek_train_step_end`` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):
        self.calls.append((step, trainer.step))


def _fit_with_spy(config, run_dir: Path) -> tuple[StepSpy, object]:
    """Train ``config`` on a fresh core host with a step spy registered in-process."""
    spy = StepSpy()
    host = host_for_tests()
    host.register_plugin(spy, dist="deepseek-spy")
    return spy, Trainer(config, run_dir=run_dir, host=host).fit()


def test_every_n_steps_batches_the_reads_and_keeps_every_step(tiny_config, tmp_path: Path) -> None:
    each, r1 = _fit_with_spy(tiny_config(train={"max_steps": 7}), tmp_path / "each")
    batched, r3 = _fit_with_spy(tiny_config(train={"max_steps": 7}, logging={"every_n_steps": 3}), tmp_path / "three")
    assert each.calls == [(s, s) for s in range(1, 8)]
    # Step 1 is read at once; then steps 2-4 after step 4, and 5-7 at the end.
    assert batched.calls == [(1, 1), (2, 4), (3, 4), (4, 4), (5, 7), (6, 7), (7, 7)]
    assert r3.losses == r1.losses  # the same computation, only read later
    records = [r for r in read_metrics(r3.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, 8))
    assert [r["loss"] for r in records] == r1.losses
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in records)


def test_evaluation_and_checkpoints_read_the_window_first(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 6, "eval_interval": 3}, checkpoint={"interval": 3},
                         logging={"every_n_steps": 10})
    spy, result = _fit_with_spy(config, tmp_path / "run")
    assert spy.calls == [(1, 1), (2, 3), (3, 3), (4, 6), (5, 6), (6, 6)]
    state = json.loads((result.run_dir / "checkpoints" / "step-3" / "trainer.json").read_text())
    assert state["metrics"]["loss"] == result.losses[2]  # step 3's loss was read before saving


def test_the_last_steps_are_read_when_nothing_evaluates_or_saves_them(tiny_config, tmp_path: Path) -> None:
    """No validation, ``checkpoint.at_end = false``: the steps since the last read are read at the
    last step all the same (their hooks ran never, and ``TrainResult.losses`` missed them)."""
    config = tiny_config(train={"max_steps": 5}, data={"eval_batches": 0}, checkpoint={"at_end": False},
                         logging={"every_n_steps": 3})
    spy, result = _fit_with_spy(config, tmp_path / "run")
    assert spy.calls == [(1, 1), (2, 4), (3, 4), (4, 4), (5, 5)]
    assert len(result.losses) == 5


def test_steps_done_before_an_error_are_still_written(tiny_config, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(train={"max_steps": 6}, logging={"every_n_steps": 10}), run_dir=tmp_path / "run")
    trainer._setup()
    real = trainer.strategy.forward_backward
    calls = {"n": 0}

    def failing(micro):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("data went bad")
        return real(micro)

    trainer.strategy.forward_backward = failing
    with pytest.raises(RuntimeError, match="data went bad"):
        trainer._loop()
    records = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]


def test_default_reads_every_step_on_cpu_and_every_ten_on_an_accelerator(tiny_config, tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(), run_dir=tmp_path / "run")
    trainer.strategy = types.SimpleNamespace(device=torch.device("cpu"))
    assert trainer.read_every() == 1
    trainer.strategy = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert trainer.read_every() == 10
    chosen = Trainer(tiny_config(logging={"every_n_steps": 4}), run_dir=tmp_path / "other")
    chosen.strategy = types.SimpleNamespace(device=torch.device("cuda", 0))
    assert chosen.read_every() == 4


def test_every_n_steps_must_be_positive(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"logging\.every_n_steps: must be >= 1"):
        tiny_config(logging={"every_n_steps": 0})


def test_read_scalars_keeps_order_across_numbers_and_tensors() -> None:
    values = [1.5, torch.tensor(2.0), torch.tensor(3, dtype=torch.int64), 4, torch.tensor([5.0]).sum()]
    assert read_scalars(values) == [1.5, 2.0, 3.0, 4.0, 5.0]
    assert read_scalars([]) == []


def host_for_tests() -> PluginHost:
    """A fresh host with core's built-ins only, for plugins registered in-process by one test."""
    return PluginHost(PluginSettings(autoload=False))
