"""``bench train`` tears its strategy down when our path fails after the strategy set up its
environment (a model that fails to build or in a step): the wrapped model goes first, then the
strategy's teardown (a process group, deepspeed's switch of torch's fused attention kernels),
and the failure is reported as before. It left them held for the rest of the process."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.models.gpt import GPT
from deepseek.models.presets import TinyOptions
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy

TORN_DOWN: list[bool] = []
"""Each teardown of ``acme.watch``: whether the wrapped model had gone before it."""


class _Watched(SingleDeviceStrategy):
    def teardown(self) -> None:
        TORN_DOWN.append(self.model is None)
        super().teardown()


class _FailsInAStep(GPT):
    Options = TinyOptions

    def forward(self, input_ids: Any, targets: Any = None) -> Any:
        raise RuntimeError("acme: broken forward")


class _FailsToBuild(GPT):
    Options = TinyOptions

    def __init__(self, config: TinyOptions) -> None:
        raise RuntimeError("acme: broken build")


@pytest.fixture
def host() -> PluginHost:
    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.step", _FailsInAStep)
            register("acme.build", _FailsToBuild)

        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register("acme.watch", _Watched)

    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0")
    assert record.status == "ok", record.reason
    return host


@pytest.mark.parametrize("model", ["acme.step", "acme.build"])
def test_a_failing_model_leaves_the_strategy_torn_down(model: str, host: PluginHost, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    TORN_DOWN.clear()
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "train", "--model", model, "--strategy", "acme.watch", "--steps", "1", "--warmup", "0",
              "--batch", "1", "--seq", "8", "--device", "cpu", "--json", str(tmp_path / "out.json")], host=host)
    assert exit_.value.code not in (0, None)
    assert f"acme: broken {model.split('.')[1].replace('step', 'forward')}" in capsys.readouterr().err
    assert TORN_DOWN == [True]  # once, after the wrapped model went
    assert not (tmp_path / "out.json").exists()



@pytest.fixture
def float32_switches() -> Any:
    """torch's TF32 switches put back after the test, however it ended."""
    import torch

    precision, conv = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    yield torch
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = conv


@pytest.mark.parametrize(("model", "precision", "conv"), [("tiny", "medium", False), ("acme.build", "highest", True)])
def test_bench_train_leaves_torchs_tf32_switches_as_it_found_them(model: str, precision: str, conv: bool,
                                                                   host: PluginHost, tmp_path: Path,
                                                                   float32_switches: Any) -> None:
    """Was: ``bench train`` turned TF32 on for the rest of the process (matmuls and cuDNN), so an
    in-process caller's float32 work after it ran at TF32 precision; now as it found them, after a
    bench that ended well (tiny) or failed (a model that fails to build)."""
    torch = float32_switches
    torch.set_float32_matmul_precision(precision)
    torch.backends.cudnn.allow_tf32 = conv
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "train", "--model", model, "--steps", "1", "--warmup", "0", "--batch", "1", "--seq", "8",
              "--device", "cpu", "--precision", "fp32", "--no-baseline", "--json", str(tmp_path / "out.json")],
             host=host)
    assert (exit_.value.code in (0, None)) is (model == "tiny")
    assert (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32) == (precision, conv)
