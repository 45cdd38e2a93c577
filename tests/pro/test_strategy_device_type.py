"""Pro's strategies declare where their ranks compute before any process starts
(``StrategyRules.device_type``, what ``deepseek tune``'s system tuner estimates a trial for): from
``strategy.backend``, as ``DistributedStrategy.setup_environment`` picks the device."""

from __future__ import annotations

import pytest

from deepseek.config.validate import build_dataclass
from deepseek.plugins.host import get_host

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
