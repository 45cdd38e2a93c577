"""``train.attention``: the attention kernel of a run, checked against its device before anything
is written, and in effect for every step (``deepseek.training.attention``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepseek.errors import ConfigError, UsageError
from deepseek.training.attention import attention_kernel
from deepseek.training.trainer import Trainer


def test_the_chosen_kernel_runs_every_step(tiny_config, tmp_path: Path) -> None:
    # torch's choice on the CPU for the model's causal attention is its flash kernel: "auto" and
    # "flash" train identically; "math" computes the same attention in plain ops, so its losses
    # agree closely but not to the last bit (which shows the setting reached the steps).
    auto, flash, math = (Trainer(tiny_config(train={"attention": name}), run_dir=tmp_path / name).fit()
                         for name in ("auto", "flash", "math"))
    assert flash.losses == auto.losses
    assert math.losses != flash.losses
    torch.testing.assert_close(torch.tensor(math.losses), torch.tensor(flash.losses), rtol=1e-4, atol=1e-5)
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
