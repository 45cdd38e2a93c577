"""``bench train --strategy deepspeed`` (one rank, in this process) whose model fails in a step
gives back what the strategy held: the process group, and torch's fused attention fast path that
deepspeed switches off for a run. Both stayed so for the rest of the process."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from _prohelpers import one_rank_group

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.models.gpt import GPT
from deepseek.models.presets import TinyOptions
from deepseek.plugins.host import PluginHost


class _FailsInAStep(GPT):
    Options = TinyOptions

    def forward(self, input_ids: Any, targets: Any = None) -> Any:
        raise RuntimeError("acme: broken forward")


def test_a_model_failing_in_a_step_leaves_no_group_and_the_fast_path_on(monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import torch.distributed as dist

    class Plugin:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.step", _FailsInAStep)

    host = PluginHost()  # the installed plugins (deepseek-pro's deepspeed), and acme's model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0").status == "ok"
    one_rank_group(monkeypatch)
    assert torch.backends.mha.get_fastpath_enabled() and not dist.is_initialized()
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "train", "--model", "acme.step", "--strategy", "deepspeed", "--steps", "1", "--warmup", "0",
              "--batch", "1", "--seq", "8", "--device", "cpu", "--precision", "fp32"], host=host)
    assert exit_.value.code == 1 and "forward raised RuntimeError: acme: broken forward" in capsys.readouterr().err
    assert torch.backends.mha.get_fastpath_enabled() and not dist.is_initialized()
