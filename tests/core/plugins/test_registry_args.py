"""Arguments of the wrong kind given to the timm-style ``deepseek.create_*`` / ``list_*``
functions: one ``UsageError`` naming the argument, never a ``TypeError`` from a lookup or a
schedule's arithmetic."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import deepseek
from deepseek.errors import UsageError


@pytest.mark.parametrize(("call", "message"), [
    (lambda: deepseek.create_model(5), "model name: expected the name of a registered model (a str), got 5"),
    (lambda: deepseek.create_model(None), "model name: expected the name of a registered model (a str), got None"),
    (lambda: deepseek.create_strategy(["single"]), "strategy name: expected the name of a registered strategy"),
    (lambda: deepseek.create_pass(""), "pass name: expected the name of a registered pass (a str), got ''"),
    (lambda: deepseek.list_models(5), "pattern: expected a glob such as 'gpt*' (a str) or None, got 5"),
    (lambda: deepseek.create_dataset("text", batch_size="4"), "batch_size: expected a whole number >= 1, got '4'"),
    (lambda: deepseek.create_dataset("text", batch_size=4, seed="x"), "seed: expected a whole number >= 0, got 'x'"),
    (lambda: deepseek.create_dataset("text", batch_size=4, seed=-1), "seed: must be >= 0, got -1"),
    (lambda: deepseek.create_dataset("text", batch_size=4, seed=2**32), "seed: must be from 0 to 4294967295"),
    (lambda: deepseek.create_optimizer("sgd", 5, lr=0.1), "params: expected the parameters to optimize"),
    (lambda: deepseek.create_lr_schedule("cosine", lr="x", decay_steps=10), "lr: expected a number, got 'x' (str)"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=float("nan"), decay_steps=10), "lr: must be a finite number, got nan"),
    # train.lr's rule (config.field_checks.learning_rate): the API took 0 and 1e308, which a config refuses
    (lambda: deepseek.create_lr_schedule("cosine", lr=0.0, decay_steps=10), "lr: must be > 0 and at most 100, got 0.0"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e308, decay_steps=10), "lr: must be > 0 and at most 100, got 1e+308"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e-3, decay_steps=10.5), "decay_steps: expected a whole number"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e-3, warmup_steps=-1, decay_steps=10),
     "warmup_steps: must be >= 0, got -1"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e-3, min_lr=1.0, decay_steps=10),
     "min_lr: 1.0 is above lr 0.001"),
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e-3, warmup_steps=1, decay_steps=10).lr_at(-1),
     "lr_at: step must be a whole number >= 0"),  # was a negative rate, -0.001
    (lambda: deepseek.create_lr_schedule("cosine", lr=1e-3, decay_steps=10).lr_at(None),
     "lr_at: step must be a whole number >= 0 (optimizer steps count from 1), got None"),
    (lambda: deepseek.create_model("tiny", device="gpu"), "device: 'gpu' is not allowed"),
    (lambda: deepseek.create_model("tiny", device=5), "device: expected a device name such as 'cpu' or 'cuda:0'"),
])
def test_a_registry_argument_of_the_wrong_kind_is_one_line_naming_it(call: Any, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        call()
    assert message in str(caught.value)


def test_the_right_kinds_still_build() -> None:
    assert deepseek.list_models("ti*") == ["tiny"]
    opt = deepseek.create_optimizer("sgd", nn.Linear(2, 2).named_parameters(), lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1] * len(opt.param_groups)
    schedule = deepseek.create_lr_schedule("linear", lr=1e-3, warmup_steps=2, decay_steps=10)
    assert schedule.lr_at(1) == pytest.approx(5e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_create_model_on_a_missing_gpu_names_device_not_the_model() -> None:
    with pytest.raises(UsageError, match=r"^device: 'cuda' but no CUDA device is available; use 'cpu'$"):
        deepseek.create_model("tiny", device="cuda")  # was a PluginError calling core's model a plugin bug


def test_create_strategy_builds_the_documented_way_with_validated_keys() -> None:
    from deepseek.errors import ConfigError

    strategy = deepseek.create_strategy("single", device="cpu")  # was a TypeError: precision= was required
    assert type(strategy).__name__ == "SingleDeviceStrategy"
    assert strategy.options.device == "cpu" and strategy.precision.requested == "auto"
    assert deepseek.create_strategy("single", precision="bf16").precision.name == "bf16"
    with pytest.raises(ConfigError, match=r"^strategy\.devcie: unknown key \(did you mean 'device'\?\)"):
        deepseek.create_strategy("single", devcie="cpu")
    with pytest.raises(ConfigError, match=r"^precision\.dtype: 'fp64' is not allowed"):
        deepseek.create_strategy("single", precision="fp64")
