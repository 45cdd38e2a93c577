"""Learning-rate schedules and optimizers as registered components (docs/plugins.md section 14):
the built-in schedules' numbers, the trainer following the configured schedule step by step, a
third-party optimizer and schedule written as the docs show (registered in-process) training and
resuming exactly, a wsd run continued past its first ``max_steps`` equal to one run, and broken
or mistyped ones refused in one line."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import deepseek
from deepseek import hookimpl
from deepseek.errors import ConfigError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.metrics import read_metrics
from deepseek.training.optimizers import OptimizerBuilder
from deepseek.training.schedule import WSD, Constant, Cosine, Linear, LRSchedule, WSDOptions
from deepseek.training.trainer import Trainer

NUMBERS = {"lr": 1.0, "min_lr": 0.1, "warmup_steps": 2, "decay_steps": 12}


def test_the_builtin_schedules_numbers() -> None:
    linear, constant = Linear(**NUMBERS), Constant(**NUMBERS)
    assert [linear.lr_at(s) for s in (1, 2, 7, 12, 20)] == pytest.approx([0.5, 1.0, 0.55, 0.1, 0.1])
    assert [constant.lr_at(s) for s in (1, 2, 7, 12, 20)] == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])
    cosine = Cosine(**NUMBERS)
    assert cosine.lr_at(7) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    # wsd: stable at lr until the last 40% of steps 2..12 (from step 8), then down to min_lr by its shape
    for shape, at10 in (("linear", 0.55), ("cosine", 0.55), ("sqrt", 1.0 - 0.9 * math.sqrt(0.5))):
        wsd = WSD(WSDOptions(decay_fraction=0.4, shape=shape), **NUMBERS)
        assert [wsd.lr_at(s) for s in (1, 5, 8)] == pytest.approx([0.5, 1.0, 1.0])
        assert wsd.lr_at(10) == pytest.approx(at10) and wsd.lr_at(12) == pytest.approx(0.1)
    assert WSD(WSDOptions(decay_fraction=0.4, shape="cosine"), **NUMBERS).lr_at(9) == pytest.approx(
        1.0 - 0.9 * 0.5 * (1 - math.cos(math.pi * 0.25)))
    assert deepseek.list_lr_schedules() == ["constant", "cosine", "linear", "wsd"]
    made = deepseek.create_lr_schedule("wsd", lr=1.0, min_lr=0.1, warmup_steps=2, decay_steps=12, decay_fraction=0.4)
    assert made.lr_at(10) == pytest.approx(0.55)


def _rates(run: Path) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in read_metrics(run / "metrics.jsonl") if "lr" in r}


def test_the_trainer_steps_at_the_configured_schedules_rates(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 6, "warmup_steps": 1, "decay_steps": 5},
                         lr_schedule={"name": "linear"}, optimizer={"name": "sgd", "nesterov": True})
    Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()
    expected = Linear(lr=3e-3, min_lr=3e-4, warmup_steps=1, decay_steps=5)
    assert _rates(tmp_path / "run") == pytest.approx({s: expected.lr_at(s) for s in range(1, 7)})
    assert config.to_dict()["optimizer"]["nesterov"] is True and config.to_dict()["lr_schedule"] == {"name": "linear"}


# ---------------------------------------------------------------- a plugin's, as docs/plugins.md section 14 writes them


@dataclasses.dataclass(frozen=True)
class SignSGDOptions:
    scale: float = 1.0


class _SignSGD(torch.optim.Optimizer):
    def __init__(self, params: Any, lr: float, scale: float) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": 0.0})
        self.scale = scale

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(p.grad.sign(), alpha=-group["lr"] * self.scale)


class SignSGD(OptimizerBuilder):
    Options = SignSGDOptions
    state_bytes = 0

    def create(self, groups: Any, lr: float, *, master_weights: bool = False, accumulation: int = 1) -> Any:
        return _SignSGD(groups, lr=lr, scale=self.options.scale)

    def initial_state(self, param: torch.Tensor) -> dict[str, Any]:
        return {}


@dataclasses.dataclass(frozen=True)
class StepDecayOptions:
    factor: float = 0.5
    every: int = 100


class StepDecay(LRSchedule):
    Options = StepDecayOptions

    def lr_at(self, step: int) -> float:
        if step <= self.warmup_steps:
            return self.lr * step / max(self.warmup_steps, 1)
        drops = (step - self.warmup_steps) // self.options.every
        return max(self.lr * self.options.factor ** drops, self.min_lr)


class Broken(LRSchedule):
    def lr_at(self, step: int) -> float:
        return float("nan") if step == 3 else self.lr


class Raising(LRSchedule):
    def lr_at(self, step: int) -> float:
        return self.lr * 3 / (3 - step) if step < 3 else self.lr / (step - 3)  # ZeroDivisionError at step 3


class NotAnOptimizer(SignSGD):
    def create(self, groups: Any, lr: float, *, master_weights: bool = False, accumulation: int = 1) -> Any:
        return groups


class AcmePlugin:
    @hookimpl
    def deepseek_register_optimizers(self, register):  # noqa: ANN001, ANN201
        register("acme.signsgd", SignSGD, description="steps by the gradient's sign")
        register("acme.notopt", NotAnOptimizer, description="create() returns its groups")

    @hookimpl
    def deepseek_register_lr_schedules(self, register):  # noqa: ANN001, ANN201
        register("acme.step", StepDecay, description="step decay")
        register("acme.broken", Broken, description="NaN at step 3")
        register("acme.raising", Raising, description="raises at step 3")


@pytest.fixture
def host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(AcmePlugin(), dist="deepseek-acme").status == "ok"
    return host


def test_a_plugin_optimizer_and_schedule_train_and_resume_exactly(host: PluginHost, tiny_config_on,
                                                                  tmp_path: Path) -> None:
    sections = {"optimizer": {"name": "acme.signsgd", "scale": 0.5, "weight_decay": 0.0},
                "lr_schedule": {"name": "acme.step", "factor": 0.5, "every": 2},
                "train": {"max_steps": 6, "warmup_steps": 1}, "checkpoint": {"interval": 3, "keep_last": 5}}
    config = tiny_config_on(host, **sections)
    whole = Trainer(config, run_dir=tmp_path / "whole", quiet=True, host=host).fit()
    assert _rates(tmp_path / "whole") == pytest.approx({1: 3e-3, 2: 3e-3, 3: 1.5e-3, 4: 1.5e-3, 5: 7.5e-4, 6: 7.5e-4})
    resumed = Trainer(config, run_dir=tmp_path / "resumed", quiet=True, host=host,
                      resume=tmp_path / "whole" / "checkpoints" / "step-3").fit()
    assert resumed.losses == whole.losses[3:]

    # what the builder makes: each element moves by lr * scale * sign(grad)
    layer = torch.nn.Linear(3, 2)
    before = layer.weight.detach().clone()
    layer(torch.ones(1, 3)).sum().backward()
    opt = SignSGD(config.optimizer.options, config.optimizer).create([{"params": [layer.weight], "weight_decay": 0.0}],
                                                                    0.1)
    opt.step()
    assert torch.allclose(before - layer.weight.detach(), torch.full_like(before, 0.05))


def test_create_optimizer_builds_a_registered_one_with_decay_on_matrices_only() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    opt = deepseek.create_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.01)
    assert type(opt) is torch.optim.SGD and opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.5
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(1, 0.01), (3, 0.0)]
    assert deepseek.list_optimizers("adam*") == ["adamw"]
    with pytest.raises(ConfigError, match=r"^optimizer\.nesterov: Nesterov momentum needs"):
        deepseek.create_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.0, nesterov=True)


def test_a_schedule_returning_nan_is_the_plugins_fault_before_that_step(host: PluginHost, tiny_config_on,
                                                                       tmp_path: Path) -> None:
    config = tiny_config_on(host, lr_schedule={"name": "acme.broken"}, train={"max_steps": 4})
    with pytest.raises(PluginError, match=r"^lr_schedule 'acme.broken' \(deepseek-acme .*\): lr_at\(3\) returned nan; "
                                          r"a schedule must"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert sorted(_rates(tmp_path / "run")) == [1, 2]


def test_a_schedule_that_raises_is_one_line_naming_it(host: PluginHost, tiny_config_on, tmp_path: Path) -> None:
    # it was "internal error: ZeroDivisionError: ..." with no word of the schedule or its plugin
    config = tiny_config_on(host, lr_schedule={"name": "acme.raising"}, train={"max_steps": 4})
    with pytest.raises(PluginError, match=r"^lr_schedule 'acme.raising' \(deepseek-acme .*\): lr_at\(3\) raised "
                                          r"ZeroDivisionError: float division by zero; a bug in the plugin") as info:
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    assert "\n" not in str(info.value)


def test_a_wsd_run_continued_past_its_first_max_steps_equals_one_run(tiny_config, tmp_path: Path) -> None:
    sections = {"lr_schedule": {"name": "wsd", "decay_fraction": 0.5},
                "checkpoint": {"interval": 0, "keep_last": 2, "at_end": True}}
    whole = Trainer(tiny_config(train={"max_steps": 8, "decay_steps": 8}, **sections),
                    run_dir=tmp_path / "whole", quiet=True).fit()
    first = tiny_config(train={"max_steps": 4, "decay_steps": 8}, **sections)
    Trainer(first, run_dir=tmp_path / "part", quiet=True).fit()
    rest = Trainer(tiny_config(train={"max_steps": 8, "decay_steps": 8}, **sections),
                   run_dir=tmp_path / "part", quiet=True, resume=tmp_path / "part").fit()
    assert rest.losses == whole.losses[4:]
    assert _rates(tmp_path / "part") == _rates(tmp_path / "whole")


@pytest.mark.parametrize(("sections", "message"), [
    ({"lr_schedule": {"name": "cosin"}}, r"^lr_schedule\.name: unknown lr_schedule 'cosin'; did you mean 'cosine'"),
    ({"lr_schedule": {"name": "wsd", "decay_fraction": 1.5}}, r"^lr_schedule\.decay_fraction: must be in \(0, 1\]"),
    ({"lr_schedule": {"name": "wsd", "shap": "linear"}}, r"^lr_schedule\.shap: unknown key.*did you mean 'shape'"),
    ({"lr_schedule": {"decay_fraction": 0.3}}, r"^lr_schedule\.decay_fraction: unknown key for lr_schedule 'cosine'; "
                                                 r"lr_schedule 'wsd' \(deepseek-core\) takes it: set lr_schedule\.name = \"wsd\""),
    ({"lr_schedule": {"decay_fractio": 0.3}}, r"^lr_schedule\.decay_fractio: unknown key \(lr_schedule 'cosine' takes no options "
                                                r"of its own\); allowed keys: name$"),
    ({"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.0}},
     r"^optimizer\.nesterov: Nesterov momentum needs optimizer\.momentum > 0"),
    ({"optimizer": {"name": "sgd", "nesterow": True}}, r"^optimizer\.nesterow: unknown key.*did you mean 'nesterov'"),
    ({"optimizer": {"name": 3}}, r"^optimizer\.name: "),
])
def test_bad_schedule_and_optimizer_keys_are_one_line(tiny_config, sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        tiny_config(**sections)
    assert "\n" not in str(info.value)


def test_weights_trained_with_a_plugins_optimizer_and_schedule_load_without_the_plugin(
        host: PluginHost, tiny_config_on, tmp_path: Path) -> None:
    """eval / generate rebuild the model from the run's saved config: the optimizer and schedule
    (like the strategy) are not part of the model, so a run trained with a plugin's loads where
    that plugin is not installed."""
    import os
    import subprocess
    import sys

    config = tiny_config_on(host, optimizer={"name": "acme.signsgd"}, lr_schedule={"name": "acme.step"},
                            train={"max_steps": 2})
    Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")},
           "DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-m", "deepseek", "eval", "--checkpoint", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(step 2, model tiny)" in done.stdout
    # where the plugin is installed, the loaded config keeps them (what compress records and recovers with)
    from deepseek.training.inference import load_trained

    _, kept, _ = load_trained(tmp_path / "run", "cpu", host=host)
    assert (kept.optimizer.name, kept.lr_schedule.name) == ("acme.signsgd", "acme.step")
    _, core_only, _ = load_trained(tmp_path / "run", "cpu", host=PluginHost(PluginSettings(autoload=False)))
    assert (core_only.optimizer.name, core_only.lr_schedule.name) == ("adamw", "cosine")


def test_an_optimizer_whose_create_returns_no_optimizer_is_named_with_its_distribution(
        host: PluginHost, tiny_config_on, tmp_path: Path) -> None:
    config = tiny_config_on(host, optimizer={"name": "acme.notopt"})
    with pytest.raises(PluginError, match=r"^optimizer 'acme.notopt' \(deepseek-acme .*\): create\(\) returned list, "
                                          r"not a torch.optim.Optimizer"):
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()



def test_create_lr_schedule_defaults_are_zero_not_the_runs() -> None:
    # docs/python-api.md: min_lr and warmup_steps default to 0 here (a run's are lr / 20 capped at 1e-4, and a
    # tenth of the steps): a user comparing this rate with a run's saw 0.0 at decay_steps where the run had 5e-5
    schedule = deepseek.create_lr_schedule("cosine", lr=1e-3, decay_steps=10_000)
    assert schedule.lr_at(0) == pytest.approx(1e-3) and schedule.lr_at(10_000) == 0.0
    floored = deepseek.create_lr_schedule("cosine", lr=1e-3, min_lr=5e-5, warmup_steps=100, decay_steps=10_000)
    assert floored.lr_at(0) == 0.0 and floored.lr_at(100) == pytest.approx(1e-3)
    assert floored.lr_at(10_000) == pytest.approx(5e-5)
