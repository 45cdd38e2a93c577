"""Pro's strategies declare where their ranks compute before any process starts
(``StrategyRules.device_type``, what ``deepseek tune``'s system tuner estimates a trial for): from
``strategy.backend``, as ``DistributedStrategy.setup_environment`` picks the device; the checks made
before launch (``resolved_device_type``) read the same rule."""

from __future__ import annotations

import pytest
import torch

from deepseek.config.validate import build_dataclass
from deepseek.plugins.host import get_host
from deepseek.training.mixed_precision import Precision

PRO_STRATEGIES = sorted(c.name for c in get_host().components("strategy") if c.dist == "deepseek-pro")


def test_every_pro_strategy_is_checked() -> None:
    assert {"ddp", "fsdp", "deepspeed", "pipeline", "hybrid", "tp"} <= set(PRO_STRATEGIES)


@pytest.mark.parametrize("name", PRO_STRATEGIES)
def test_device_type_follows_the_backend(name: str) -> None:
    """gloo's ranks compute on the CPU, NCCL's on their CUDA device; ``auto`` picks at set-up."""
    cls = get_host().resolve("strategy", name).load()
    kinds = {backend: cls.device_type(build_dataclass(cls.Options, {"backend": backend}, path="strategy"))
             for backend in ("gloo", "nccl", "auto")}
    assert kinds == {"gloo": "cpu", "nccl": "cuda", "auto": None}, name


@pytest.mark.parametrize("name", PRO_STRATEGIES)
@pytest.mark.parametrize("cuda", [False, True])
def test_the_checks_device_is_the_one_the_backend_runs_on(name: str, cuda: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What the checks made before any process starts read (``resolved_device_type``: DeepSpeed's
    ``check_launch``, ``sync_batchnorm``'s) is the device of the process group ``backend`` joins at
    set-up, for every backend, with and without CUDA: the two rules never diverge."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cls = get_host().resolve("strategy", name).load()
    for backend in ("gloo", "nccl", "auto"):
        strategy = cls({"backend": backend}, precision=Precision("fp32"))
        device = cls.resolved_device_type(strategy.options, cuda_available=cuda)
        assert device == {"gloo": "cpu", "nccl": "cuda"}[strategy.backend], (name, backend, cuda)
