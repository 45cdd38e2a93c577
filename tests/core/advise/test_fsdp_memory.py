"""The memory model against GPU measurements (1.3b on H200), and the FSDP2 behaviour its fsdp rows
assume, checked with torch's own ``fully_shard`` on the CPU. The DeepSpeed rows' rule (reduce
bucket and gradient partitions only in backward, so only the larger of them and the activations
counts) is what makes ZeRO-1 and ZeRO-2 measure the same peak."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch

import deepseek
from deepseek.advise.estimate import (
    STRATEGIES,
    Estimate,
    TrainSetup,
    activation_bytes,
    estimate_strategy,
    shape_from_config,
)
from deepseek.models import GPTConfig
from deepseek.models.presets import preset_config

SPEC = {s.key: s for s in STRATEGIES}
GiB = 1024**3

# torch.cuda.max_memory_allocated per GPU, measured 2026-11-30 on 2 x H200 (torch 2.11):
# `deepseek launch -n 2 -- bench train --model 1.3b --batch 8 --seq 2048 --precision bf16
# --strategy S [--strategy-option cpu_offload=true] [--activation-checkpointing]`
# (single: `deepseek bench train` on one H200). Compared with the estimate without overhead.
MEASURED: tuple[tuple[str, bool, int], ...] = (
    ("ddp", True, 25_892_551_168),
    ("zero3", True, 12_201_132_544),
    ("zero3+offload", True, 3_604_765_696),
    ("zero3", False, 37_091_113_472),
    ("ddp", False, 51_563_987_456),
    ("single", False, 46_710_718_976),
    # DeepSpeed (`--strategy deepspeed --strategy-option stage=N [offload_optimizer=true]`, third session)
    ("zero1", True, 14_769_300_480),
    ("zero2", True, 14_769_300_480),
    ("zero2+offload", True, 7_520_121_856),
)


def _estimate_1p3b(key: str, checkpointing: bool) -> Estimate:
    shape = shape_from_config(preset_config("1.3b"), "1.3b")
    assert shape.n_params == 1_213_321_216
    setup = TrainSetup(2048, 8, "bf16", activation_checkpointing=checkpointing, gpus=2)
    return estimate_strategy(SPEC[key], shape, setup, overhead=0)


@pytest.mark.parametrize("key,checkpointing,measured", MEASURED)
def test_estimate_is_within_15_percent_of_h200_measurement(
    key: str, checkpointing: bool, measured: int
) -> None:
    est = _estimate_1p3b(key, checkpointing)
    assert est.total == pytest.approx(measured, rel=0.15), (est.total / GiB, measured / GiB)


def test_fsdp_peak_is_the_foreach_adamw_step_with_checkpointing() -> None:
    """With checkpointing the fsdp peak is the optimizer step: fp32 shards + m + v (12 B), fp32
    gradients (4 B) and foreach AdamW's sqrt(v) (4 B), over 2 GPUs. With CPU offload the step
    runs on the host, so the GPU holds activations and gather buffers only."""
    p = 1_213_321_216
    z3 = _estimate_1p3b("zero3", True)
    assert (z3.weights, z3.step_temp) == (0, 4 * p // 2)
    assert z3.total == z3.optimizer + z3.gradients + z3.step_temp == 20 * p // 2
    assert z3.buffers + max(z3.gradients, z3.activations) < z3.gradients + z3.step_temp
    off = _estimate_1p3b("zero3+offload", True)
    assert (off.weights, off.gradients, off.optimizer, off.step_temp) == (0, 0, 0, 0)
    assert off.total == off.activations + off.buffers
    # fp32 params + gradients + m + v, both GPUs' shards, and the host-side step's sqrt(v)
    assert off.host == 20 * p
    # without checkpointing the activations dominate; the step phase does not count
    full = _estimate_1p3b("zero3", False)
    assert full.total == full.optimizer + full.buffers + full.activations


@contextlib.contextmanager
def _one_rank_gloo() -> Iterator[None]:
    import torch.distributed as dist

    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group already running")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _checkpointed_input_bytes(fsdp: bool) -> tuple[int, torch.nn.Module]:
    """Bytes of the tensors the checkpointed blocks keep (their inputs), after one step's
    forward and backward under bf16 autocast; with ``fsdp``, sharded like deepseek-pro's fsdp."""
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=64, n_heads=4, n_layers=3, max_seq_len=32)
    model.set_activation_checkpointing(True)
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh("cpu", (1,))
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in model.blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy)
        fully_shard(model, mesh=mesh, mp_policy=policy)
    kept: list[torch.Tensor] = []
    for block in model.blocks:  # prepended: sees what checkpoint() was given, before any FSDP cast
        block.register_forward_pre_hook(lambda _m, args: kept.append(args[0]), prepend=True)
    x = torch.randint(0, 256, (3, 20))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x, x)
    held = sum(t.numel() * t.element_size() for t in kept)  # before backward's recomputation
    loss.backward()
    return held, model


def test_fsdp2_mixed_precision_keeps_a_16_bit_residual_and_fp32_shards() -> None:
    shape = shape_from_config(GPTConfig(d_model=64, n_heads=4, n_layers=3, max_seq_len=32), "t")
    setup = TrainSetup(seq_len=20, micro_batch=3, precision="bf16", activation_checkpointing=True)

    def inputs_term(residual_in_compute_dtype: bool) -> int:
        act = activation_bytes(shape, setup, residual_in_compute_dtype=residual_in_compute_dtype)
        return act.total - act.per_layer - act.head

    plain, _ = _checkpointed_input_bytes(fsdp=False)
    assert plain == inputs_term(False) == 3 * 20 * 3 * 64 * 4  # fp32 residual under autocast
    with _one_rank_gloo():
        sharded, model = _checkpointed_input_bytes(fsdp=True)
        # the estimator's fsdp accounting: fp32 shards (the masters) and fp32 gradients
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert {p.grad.dtype for p in model.parameters()} == {torch.float32}
    assert sharded == inputs_term(True) == plain // 2


# The largest models measured on 2 x H200 (139.8 GiB each, 251 GiB host RAM), micro-batch 8 x 2048,
# bf16, activation checkpointing, `train.init_device = "device"` (benchmarks/gpu_suite.sh groups
# `largest` and `largest-offload`, 2026-11-30): (key, d_model, heads, layers, measured peak bytes or
# None when the run failed: CUDA out of memory for ddp/zero3, the host killed the offload run).
LARGEST: tuple[tuple[str, int, int, int, int | None], ...] = (
    ("ddp", 4096, 32, 36, 141_854_542_336),
    ("ddp", 4096, 32, 38, None),
    ("zero3", 5120, 40, 46, 144_915_235_840),
    ("zero3", 5120, 40, 48, None),
    ("zero3+offload", 5120, 40, 40, 13_227_947_008),
    ("zero3+offload", 5120, 40, 48, None),
)


@pytest.mark.parametrize("key,d_model,heads,layers,measured", LARGEST)
def test_largest_trainable_model_on_two_h200(key: str, d_model: int, heads: int, layers: int,
                                             measured: int | None) -> None:
    """The advisor's fit verdict matches what trained and what failed, and where a run trained,
    its GPU peak is within 5% of the estimate."""
    config = GPTConfig(vocab_size=256, d_model=d_model, n_heads=heads, n_layers=layers, max_seq_len=2048)
    shape = shape_from_config(config, f"{d_model}x{layers}")
    setup = TrainSetup(2048, 8, "bf16", activation_checkpointing=True, gpus=2)
    est = estimate_strategy(SPEC[key], shape, setup, overhead=0, usable_gpu=int(139.8 * GiB),
                            host_memory=251 * GiB)
    assert est.fits == (measured is not None), (est.total / GiB, est.host / GiB)
    if measured is not None:
        assert est.total == pytest.approx(measured, rel=0.05), (est.total / GiB, measured / GiB)


def test_deepspeed_peak_is_activations_or_backward_buckets_not_both() -> None:
    z1, z2 = _estimate_1p3b("zero1", True), _estimate_1p3b("zero2", True)
    assert z1.activations > z1.buffers + z1.gradients  # so sharding the gradients changes nothing
    assert z1.total == z2.total == z1.weights + z1.optimizer + z1.activations
    off = _estimate_1p3b("zero2+offload", True)
    assert off.total == off.weights + off.activations and off.optimizer == 0
