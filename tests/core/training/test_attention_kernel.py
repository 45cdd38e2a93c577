"""``train.attention``: the attention kernel of a run, checked against its device before anything
is written, and in effect for every step (``deepseek.training.attention``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepseek import hookimpl
from deepseek.errors import ConfigError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.attention import attention_kernel
from deepseek.training.trainer import Trainer


class KernelProbe:
    """Records, at the end of every step, which SDPA kernels torch may use (flash, math)."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool]] = []

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):  # noqa: ANN001, ANN201, ARG002
        self.seen.append((torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()))


def test_the_chosen_kernel_runs_every_step(tiny_config_on, tmp_path: Path) -> None:
    # every step runs with only the chosen kernel allowed ("auto": torch may pick either); torch's
    # choice on the CPU for the model's causal attention is its flash kernel, so "auto" and "flash"
    # train identically, and "math" computes the same attention in plain ops (equal to rounding:
    # whether its last bits differ depends on the CPU, so the test does not ask)
    results, seen = {}, {}
    for name in ("auto", "flash", "math"):
        probe = KernelProbe()
        host = PluginHost(PluginSettings(autoload=False))
        assert host.register_plugin(probe, dist="deepseek-probe").status == "ok"
        config = tiny_config_on(host, train={"attention": name})
        results[name] = Trainer(config, run_dir=tmp_path / name, quiet=True, host=host).fit()
        seen[name] = set(probe.seen)
        assert len(probe.seen) == results[name].step
    assert seen == {"auto": {(True, True)}, "flash": {(True, False)}, "math": {(False, True)}}
    assert results["flash"].losses == results["auto"].losses
    torch.testing.assert_close(torch.tensor(results["math"].losses), torch.tensor(results["flash"].losses),
                               rtol=1e-4, atol=1e-5)
    # the setting is restored after the run
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()


@pytest.mark.parametrize("name", ["cudnn", "efficient", "fa4"])
def test_a_cuda_only_kernel_on_the_cpu_is_refused_before_anything_is_written(tiny_config, tmp_path: Path,
                                                                               name: str) -> None:
    with pytest.raises(ConfigError) as info:
        Trainer(tiny_config(train={"attention": name}), run_dir=tmp_path / "run").fit()
    assert str(info.value) == (f"train.attention = {name!r} needs a CUDA device and this run's device is the CPU; "
                               "use one of auto, flash, math there")
    assert not (tmp_path / "run").exists()


def test_a_call_the_kernel_cannot_take_is_one_line_naming_the_setting() -> None:
    q = torch.randn(1, 2, 8, 4)
    with pytest.raises(UsageError, match=r"^train\.attention = 'flash': the model calls attention with inputs "
                                         r"this kernel cannot take on cpu .*use \"auto\" or another kernel$"):
        with attention_kernel("flash", torch.device("cpu")):
            # flash takes no value head size other than the query's (math does)
            F.scaled_dot_product_attention(q, q, torch.randn(1, 2, 8, 6))


def test_an_unknown_kernel_in_the_config_gets_a_did_you_mean(tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"train\.attention.*flash"):
        tiny_config(train={"attention": "flsh"})


def test_fa4_without_its_package_names_it() -> None:
    import importlib.util

    from deepseek.training.fa4 import activate

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(UsageError, match=r"^train\.attention = 'fa4' needs the flash-attn-4 package: "
                                         r"pip install flash-attn-4$"):
        activate("train.attention = 'fa4'")
