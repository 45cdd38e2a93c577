"""Where ``bench train`` plans to compute, before anything is built: by the rule its strategy's
set-up follows (``single``'s ``[strategy] device``, whatever name picks ``single``; another
strategy's declared ``device_type``), not by ``--device`` alone. No GPU here: CUDA being there is
pretended (``torch.cuda.is_available``), and nothing that would touch it runs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pytest
import torch

from deepseek import hookimpl
from deepseek.bench._train_config import BenchSettings, bench_config, planned_device
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.single import SingleDeviceStrategy


@dataclass(frozen=True)
class _OnOptions:
    on: str = "cpu"


class _Declares(SingleDeviceStrategy):
    """A strategy that says where it computes by a key of its own (``on``), as pro's do by ``backend``."""

    name: ClassVar[str] = "acme.declares"
    Options: ClassVar[type] = _OnOptions

    @classmethod
    def device_type(cls, options: Any) -> Literal["cpu", "cuda"] | None:
        return None if options.on == "auto" else options.on

    def setup_environment(self) -> None:
        self._device = torch.device(self.options.on if self.options.on != "auto" else "cuda")
        self.precision.bind(self._device)


@pytest.fixture
def host() -> PluginHost:
    """Core's built-ins, ``acme.declares``, and ``acme.one``: another name for core's ``single``."""
    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register: Any) -> None:
            register("acme.declares", _Declares)
            register("acme.one", "deepseek.training.single:SingleDeviceStrategy")

    host = PluginHost(PluginSettings(autoload=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0")
    assert record.status == "ok", record.reason
    return host


@pytest.fixture
def cuda_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("name", ["single", "deepseek-core:single", "acme.one"])
def test_single_by_any_name_takes_the_device_option(name: str, host: PluginHost) -> None:
    """``--strategy deepseek-core:single`` (or another name of ``single``) was not recognised:
    ``--device cpu`` was dropped (single's own ``auto`` ran) and a contradicting
    ``--strategy-option device=...`` went unnoticed."""
    assert bench_config(BenchSettings(strategy=name, device="cpu"), host).strategy.options.device == "cpu"
    with pytest.raises(UsageError, match=r"^--strategy-option device: 'cuda' contradicts --device cpu; give single's "
                                         r"device once$"):
        bench_config(BenchSettings(strategy=name, device="cpu", strategy_options=('device="cuda"',)), host)


@pytest.mark.parametrize(("strategy", "options"), [
    ("single", ('device="cpu"',)),
    ("deepseek-core:single", ('device="cpu"',)),
    ("acme.declares", ()),  # device_type "cpu"
])
def test_the_planned_device_is_the_strategys_not_devices(strategy: str, options: tuple[str, ...], host: PluginHost,
                                                         cuda_there: None) -> None:
    """With ``--device auto`` where CUDA is available, a strategy that computes on the CPU was
    planned for CUDA (``--device`` alone was read)."""
    assert planned_device(BenchSettings(strategy=strategy, strategy_options=options), host) == torch.device("cpu")


def test_a_strategy_that_picks_at_set_up_is_planned_as_it_picks(host: PluginHost, cuda_there: None) -> None:
    assert planned_device(BenchSettings(strategy="acme.declares", strategy_options=('on="auto"',)),
                          host) == torch.device("cuda")
    assert planned_device(BenchSettings(strategy="acme.declares", strategy_options=('on="cuda"',)),
                          host) == torch.device("cuda")


def test_the_bench_checks_attention_against_the_strategys_device(host: PluginHost, cuda_there: None) -> None:
    """``--attention cudnn`` on a strategy pinned to the CPU is refused before anything is built,
    where CUDA is available too (it was checked against CUDA, and the run went on to the CPU)."""
    from deepseek.bench.train import run_bench
    from deepseek.errors import ConfigError

    settings = BenchSettings(model="tiny", strategy="acme.declares", attention="cudnn", precision="fp32",
                             batch=1, seq=8, steps=1, warmup=0)
    with pytest.raises(ConfigError) as caught:
        run_bench(settings, host)
    assert str(caught.value) == ("--attention cudnn needs a CUDA device and this run's device is the CPU; use one "
                                 "of auto, flash, math there")
