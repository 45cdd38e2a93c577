"""Core's other optimizers under the pro strategies (torchrun, 2 processes, CPU): sgd, adafactor
and lion under ``ddp`` and ``fsdp`` against ``single``, lion under DeepSpeed ZeRO-2 resumed from a
mid-run checkpoint, and DeepSpeed's refusal of adafactor when the config loads.

Tolerance as in test_ddp / test_fsdp: the same updates up to the summation order of the gradient
reduction, 1e-5 relative over a few fp32 steps (lion's sign is exact unless an element's
interpolated momentum sits within rounding of 0, which these runs do not hit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _prohelpers import PARITY_STEPS, losses, run_single, run_train_jobs, tiny_run

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError

RTOL = 1e-5
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": {"name": "sgd", "nesterov": True}, "train": {"lr": 3e-2}},
    "adafactor": {"optimizer": {"name": "adafactor"}, "train": {"lr": 3e-2}},
    "lion": {"optimizer": {"name": "lion", "betas": [0.9, 0.99]}, "train": {"lr": 3e-4}},
}

UNSUPPORTED = {("fsdp", "adafactor")}
"""torch's Adafactor squares a column norm of an FSDP2 DTensor shard in place (a _NormPartial that
must become Replicate): it fails at the first step."""


def _config(strategy: str, which: str, steps: int = PARITY_STEPS, **sections: Any) -> dict[str, Any]:
    return tiny_run(strategy, steps, **{**OPTIMIZERS[which], **sections})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("optimizer_runs")
    jobs = [{"name": f"{s}_{o}", "config": _config(s, o)} for o in OPTIMIZERS for s in ("ddp", "fsdp")
            if (s, o) not in UNSUPPORTED]
    ds = _config("deepspeed", "lion", 6, options={"stage": 2}, checkpoint={"interval": 3})
    jobs += [{"name": "ds_lion", "config": ds},
             {"name": "ds_lion_resumed", "config": ds, "resume": work / "ds_lion" / "checkpoints" / "step-3"}]
    records = run_train_jobs(jobs, work, timeout=900)
    for which in OPTIMIZERS:
        records[f"single_{which}"] = run_single(_config("single", which), work / f"single_{which}")
    return records


@pytest.mark.parametrize(("which", "strategy"),
                         [(o, s) for o in sorted(OPTIMIZERS) for s in ("ddp", "fsdp") if (s, o) not in UNSUPPORTED])
def test_strategies_equal_single(which: str, strategy: str, runs: dict[str, Any]) -> None:
    ref = losses(runs[f"single_{which}"])
    assert len(ref) == PARITY_STEPS and ref[-1] < ref[0]
    assert losses(runs[f"{strategy}_{which}"]) == pytest.approx(ref, rel=RTOL)


def test_deepspeed_resumes_lion_exactly(runs: dict[str, Any]) -> None:
    straight, resumed = losses(runs["ds_lion"]), losses(runs["ds_lion_resumed"])
    assert len(straight) == 6
    assert resumed == straight[3:]  # exp_avg scattered back into the ZeRO partitions to the bit


def test_deepspeed_refuses_non_elementwise_optimizers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^optimizer.name: 'adafactor' is not element-wise"):
        config_from_dict(_config("deepspeed", "adafactor"))
    with pytest.raises(ConfigError, match=r"^strategy.optimizer: 'deepspeed' builds DeepSpeed's own AdamW"):
        config_from_dict(_config("deepspeed", "lion", options={"optimizer": "deepspeed"}))
