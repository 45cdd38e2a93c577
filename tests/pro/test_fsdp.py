"""``fsdp`` / ``zero3`` (FSDP2) under torchrun (2 processes, gloo, CPU) against ``single``.

Tolerance as for DDP (see test_ddp): fp32 on CPU, the reduce-scatter sums the two ranks'
gradients in another order than one full-batch backward, ~1e-7 relative per step; 1e-5 over a
few steps. A wrong shard, a missing reduction or clipping on a local norm moves it by >= 1e-3.
"""

from __future__ import annotations

import pytest
from _prohelpers import PARITY_STEPS, losses

from deepseek.errors import ConfigError

RTOL = 1e-5


def test_zero3_losses_equal_single(pro_runs: dict, single_reference: dict) -> None:
    got = losses(pro_runs["records"]["fsdp"])
    assert got == pytest.approx(losses(single_reference["records"])[:PARITY_STEPS], rel=RTOL)


def test_fsdp_accumulation_and_activation_checkpointing_equal_single(pro_runs: dict, single_reference: dict) -> None:
    got = losses(pro_runs["records"]["fsdp_accum"])
    assert got == pytest.approx(losses(single_reference["records"])[:PARITY_STEPS], rel=RTOL)


def test_cpu_offload_on_a_cpu_only_machine_trains_like_single(pro_runs: dict, single_reference: dict) -> None:
    # CPUOffloadPolicy pins host memory only where a CUDA device is there to copy to.
    got = losses(pro_runs["records"]["fsdp_offload"])
    assert got == pytest.approx(losses(single_reference["records"])[:PARITY_STEPS], rel=RTOL)


def test_grad_norm_is_global_over_shards(pro_runs: dict, single_reference: dict) -> None:
    # Each rank holds half of every parameter: a local norm would be ~1/sqrt(2) of the true one.
    got = [r["grad_norm"] for r in pro_runs["records"]["fsdp"]]
    ref = [r["grad_norm"] for r in single_reference["records"][:PARITY_STEPS]]
    assert got == pytest.approx(ref, rel=1e-4)


def test_bf16_reduce_scatter_halves_counted_bytes(pro_runs: dict) -> None:
    plain = pro_runs["records"]["fsdp"]
    bf16 = pro_runs["records"]["fsdp_bf16"]
    for a, b in zip(plain, bf16, strict=True):
        assert a["comm_bytes"] == a["comm_bytes_uncompressed"] == b["comm_bytes_uncompressed"]
        assert b["comm_bytes"] * 2 == b["comm_bytes_uncompressed"]
        assert b["comm_reduction"] == 0.5


def test_powersgd_with_fsdp_is_rejected_naming_the_conflict() -> None:
    from deepseek.config.validate import build_dataclass
    from deepseek_pro.strategies.fsdp import FSDPOptions

    with pytest.raises(ConfigError, match=r"strategy\.compression: 'powersgd' \(str\) is not allowed"):
        build_dataclass(FSDPOptions, {"compression": "powersgd"}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.reduce_dtype: 'fp16' contradicts"):
        build_dataclass(FSDPOptions, {"compression": "bf16", "reduce_dtype": "fp16"}, path="strategy")
    assert build_dataclass(FSDPOptions, {"compression": "bf16"}, path="strategy").resolved_reduce_dtype == "bf16"
    assert build_dataclass(FSDPOptions, {}, path="strategy").resolved_reduce_dtype == "fp32"


def test_bf16_mixed_precision_policy_tracks_single_bf16(pro_runs: dict, single_mixed_precision: dict) -> None:
    # FSDP casts parameters to bf16 (MixedPrecisionPolicy) where single autocasts matmuls: both
    # compute in bf16 with fp32 masters, rounding at different places -> 1e-2 relative.
    got = losses(pro_runs["records"]["fsdp_bf16prec"])
    assert got == pytest.approx(losses(single_mixed_precision["bf16"]), rel=1e-2)


def test_fp16_is_rejected_before_launch() -> None:
    from deepseek.config.load import config_from_dict

    with pytest.raises(ConfigError, match=r"precision\.dtype: fsdp/zero3 runs fp32 or bf16"):
        config_from_dict({"strategy": {"name": "zero3"}, "precision": {"dtype": "fp16"}})
