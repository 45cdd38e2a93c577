"""The memory model's arithmetic, checked against real tensors of our GPT on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import deepseek
from deepseek.advise.estimate import (
    PAPER_BYTES,
    STRATEGIES,
    TrainSetup,
    activation_bytes,
    estimate_all,
    estimate_strategy,
    gpt_param_count,
    shape_from_config,
    shape_from_params,
)
from deepseek.errors import UsageError
from deepseek.models import GPT, GPTConfig
from deepseek.models.presets import PRESETS, preset_config

SPEC = {s.key: s for s in STRATEGIES}
GiB = 1024**3


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_param_count_of_presets_matches_the_built_model(name: str) -> None:
    model = deepseek.create_model(name, device="meta")
    assert shape_from_config(preset_config(name), source=name).n_params == model.num_parameters()


@pytest.mark.parametrize("bias,tie", [(False, False), (True, False), (False, True)])
def test_param_count_without_bias_or_tying(bias: bool, tie: bool) -> None:
    cfg = GPTConfig(d_model=96, n_heads=4, n_layers=3, d_ff=200, max_seq_len=40, bias=bias, tie_embeddings=tie)
    with torch.device("meta"):
        model = GPT(cfg)
    assert gpt_param_count(
        vocab_size=256, d_model=96, n_layers=3, d_ff=200, max_seq_len=40, bias=bias, tie_embeddings=tie
    ) == model.num_parameters()


def _states_nbytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Bytes of distinct storages of parameters, gradients and optimizer state."""
    seen: dict[int, int] = {}
    tensors = [p for p in model.parameters()] + [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def test_param_and_optimizer_estimate_matches_tensor_bytes_after_one_adamw_step() -> None:
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=192, n_heads=4, n_layers=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (2, 32))
    model(x, x).backward()
    opt.step()
    measured = _states_nbytes(model, opt)
    shape = shape_from_config(model.config, "test")
    est = estimate_strategy(SPEC["single"], shape, TrainSetup(32, 2, "fp32"), overhead=0)
    estimated = est.weights + est.gradients + est.optimizer
    assert est.bytes_per_param == {"weights": 4, "gradients": 4, "optimizer": 8}
    assert abs(estimated - measured) / measured < 0.15
    assert abs(estimated - measured) / measured < 0.01  # in fact exact up to AdamW's step counters


RSS_SCRIPT = textwrap.dedent("""
    import gc, json, os, torch, deepseek
    torch.set_num_threads(1)
    def anon():  # resident minus file-backed pages: what tensors take
        f = open("/proc/self/statm").read().split()
        return (int(f[1]) - int(f[2])) * os.sysconf("SC_PAGE_SIZE")
    x = torch.randint(0, 256, (1, 16))
    # The first AdamW step lazily imports ~70 MB of Python modules: pay that before measuring.
    warm = deepseek.create_model("tiny", d_model=32, n_heads=2, n_layers=1)
    opt = torch.optim.AdamW(warm.parameters()); warm(x, x).backward(); opt.step()
    del warm, opt; gc.collect()
    before = anon()
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=512, n_heads=8, n_layers=8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(x, x).backward(); opt.step(); gc.collect()
    print(json.dumps({"delta": anon() - before, "config": model.config.to_dict()}))
""")


def test_param_and_optimizer_estimate_matches_process_memory_within_15_percent() -> None:
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout.strip().splitlines()[-1])
    shape = shape_from_config(GPTConfig(**data["config"]), "test")
    est = estimate_strategy(SPEC["single"], shape, TrainSetup(16, 1, "fp32"), overhead=0)
    estimated = est.weights + est.gradients + est.optimizer
    assert shape.n_params > 20_000_000
    assert abs(data["delta"] - estimated) / estimated < 0.15, (data["delta"], estimated)


def _saved_activation_bytes(n_layers: int, precision: str) -> int:
    """Bytes autograd saves for backward, excluding parameters and their autocast copies."""
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", d_model=64, n_heads=4, n_layers=n_layers, max_seq_len=32)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    weight_shapes = {tuple(p.shape) for p in model.parameters()} | {tuple(p.shape)[::-1] for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and tuple(t.shape) not in weight_shapes:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    x = torch.randint(0, 256, (3, 20))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            model(x, x)
    return sum(seen.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_per_layer_activation_formula_matches_saved_tensors(precision: str) -> None:
    per_layer = (_saved_activation_bytes(4, precision) - _saved_activation_bytes(2, precision)) / 2
    shape = shape_from_config(GPTConfig(d_model=64, n_heads=4, n_layers=2, max_seq_len=32), "t")
    formula = activation_bytes(shape, TrainSetup(seq_len=20, micro_batch=3, precision=precision)).per_layer
    assert per_layer == pytest.approx(formula, rel=0.01)


def test_bytes_per_param_follow_the_zero_paper() -> None:
    assert PAPER_BYTES["mixed"].total == 16 and PAPER_BYTES["mixed"].optimizer == 12
    assert PAPER_BYTES["fp32"].total == 16 and PAPER_BYTES["fp32"].optimizer == 8
    shape = shape_from_params(1.3e9)
    rows = {e.key: e for e in estimate_all(shape, TrainSetup(2048, 1, "bf16", gpus=2), gpu_memory=80 * GiB)}
    assert rows["zero1"].bytes_per_param == {"weights": 2, "gradients": 2, "optimizer": 12}
    # autocast over fp32 parameters keeps fp32 gradients
    assert rows["ddp"].bytes_per_param["gradients"] == 4
    # FSDP2: the fp32 shard is the master (in the 12), no persistent 16-bit copy, fp32 gradients
    assert rows["zero3"].bytes_per_param == {"weights": 0, "gradients": 4, "optimizer": 12}
    fp32 = {e.key: e for e in estimate_all(shape, TrainSetup(2048, 1, "fp32", gpus=2), gpu_memory=80 * GiB)}
    assert fp32["zero3"].bytes_per_param == {"weights": 4, "gradients": 4, "optimizer": 8}


def test_zero_stages_shard_what_they_should() -> None:
    shape = shape_from_params(6.7e9)
    n = 8
    rows = {e.key: e for e in estimate_all(shape, TrainSetup(2048, 1, "bf16", gpus=n), gpu_memory=80 * GiB)}
    ddp, z1, z2, z3 = rows["ddp"], rows["zero1"], rows["zero2"], rows["zero3"]
    p = shape.n_params
    assert ddp.weights == z1.weights == z2.weights == 2 * p
    assert z1.optimizer == pytest.approx(ddp.optimizer / n, rel=1e-6)
    assert z1.gradients == 2 * p and z2.gradients == pytest.approx(2 * p / n, rel=1e-6)
    # ZeRO-3 (FSDP2): gradients and optimizer state are 1/N of DDP's; its 16-bit weights exist
    # only as gathered blocks (buffers), so no autocast weight copies
    for part in ("gradients", "optimizer"):
        assert getattr(z3, part) == pytest.approx(getattr(ddp, part) / n, rel=1e-6)
    assert z3.weights == 0 and z3.buffers > 0
    assert all(e.activations == ddp.activations for e in rows.values() if not e.key.startswith("tp"))
    assert z3.total < z2.total < ddp.total


def test_offload_moves_optimizer_states_to_the_host() -> None:
    shape = shape_from_params(1.3e9)
    rows = {e.key: e for e in estimate_all(shape, TrainSetup(2048, 1, "bf16", gpus=4), gpu_memory=80 * GiB)}
    for key in ("single", "zero1", "zero2", "zero3"):
        on, off = rows[key], rows[f"{key}+offload"]
        assert on.host == 0 and off.host > 0
        assert off.optimizer == 0 and on.optimizer > 0
        assert off.total < on.total
    assert rows["zero3+offload"].weights == 0  # parameters offloaded too
    assert rows["zero2+offload"].weights == rows["zero2"].weights


def test_activation_checkpointing_and_micro_batch_scale_activations() -> None:
    shape = shape_from_config(preset_config("1.3b"), "1.3b")
    full = activation_bytes(shape, TrainSetup(2048, 8, "bf16"))
    ckpt = activation_bytes(shape, TrainSetup(2048, 8, "bf16", activation_checkpointing=True))
    half = activation_bytes(shape, TrainSetup(2048, 4, "bf16"))
    assert ckpt.total < full.total / 4
    assert half.total == full.total // 2
    # Korthikanti's 34*s*b*h at 16 bits is 32 without dropout masks; autocast's fp32 residual adds 4
    assert full.per_layer == 2048 * 8 * (36 * 2048 + 4 * 16 + 16)


def test_fits_respects_headroom_and_overhead() -> None:
    shape = shape_from_config(preset_config("small"), "small")
    setup = TrainSetup(1024, 8, "bf16", gpus=1)
    single = estimate_all(shape, setup, gpu_memory=80 * GiB)[0]
    assert single.fits
    tight = estimate_all(shape, setup, gpu_memory=int(single.total / 0.9) - 1024)[0]
    assert not tight.fits
    exact = estimate_all(shape, setup, gpu_memory=single.total, headroom=0.0)[0]
    assert exact.fits


def test_shape_from_params() -> None:
    s = shape_from_params(1.3e9)
    assert (s.n_layers, s.d_model, s.n_heads) == (24, 2048, 16)
    big = shape_from_params(70e9)
    assert big.d_model % 128 == 0 and big.d_model % big.n_heads == 0
    assert 0.8 < 12 * big.n_layers * big.d_model**2 / 70e9 < 1.2
    assert shape_from_params(1e9, layers=10, hidden=1024).n_layers == 10
    for bad in (-1, 0, float("nan")):
        with pytest.raises(UsageError, match="--params"):
            shape_from_params(bad)
    with pytest.raises(UsageError, match="--heads"):
        shape_from_params(1e9, hidden=1000, heads=3)


def test_total_counts_freed_gradients_against_activations() -> None:
    """single/fsdp free gradients between steps (set_to_none): peak = max(grads, activations);
    DDP's buckets and DeepSpeed's partitions stay, so both count. Measured on one H200 for 1.3b,
    bf16, 8 x 2048: max_memory_allocated 43.50 GiB eager against this model's 43.07 GiB."""
    shape = shape_from_config(preset_config("1.3b"), "1.3b")
    rows = {e.key: e for e in estimate_all(shape, TrainSetup(2048, 8, "bf16", gpus=2), gpu_memory=140 * GiB)}
    single, ddp = rows["single"], rows["ddp"]
    assert single.total == single.weights + single.optimizer + single.overhead + max(single.gradients, single.activations)
    assert ddp.total == ddp.weights + ddp.optimizer + ddp.overhead + ddp.gradients + ddp.activations
    assert (single.total - single.overhead) / GiB == pytest.approx(43.50, rel=0.05)


def test_a_bf16_residual_halves_the_checkpointed_block_inputs() -> None:
    """precision.fp32_residual = false: each checkpointed block input is 2 bytes, not 4 (measured on
    an H200 by deepseek tune: 1.3b, 64 x 2048, checkpointing, bf16 residual peaked at 37.3 GiB)."""
    from deepseek.advise.estimate import (
        STRATEGIES,
        TrainSetup,
        estimate_strategy,
        shape_from_config,
    )
    from deepseek.models.presets import preset_config

    shape = shape_from_config(preset_config("1.3b"), "1.3b")
    single = next(s for s in STRATEGIES if s.key == "single")
    setups = {r: TrainSetup(seq_len=2048, micro_batch=64, precision="bf16", activation_checkpointing=True,
                            fp32_residual=r) for r in (True, False)}
    est = {r: estimate_strategy(single, shape, s, overhead=2**30) for r, s in setups.items()}
    assert est[True].activations - est[False].activations == shape.n_layers * 2048 * 64 * 2 * shape.d_model
    assert 37.3 < est[False].total / 2**30 < 37.3 * 1.09
    no_ckpt = {r: TrainSetup(seq_len=2048, micro_batch=8, precision="bf16", fp32_residual=r) for r in (True, False)}
    assert (estimate_strategy(single, shape, no_ckpt[True], overhead=0).total
            == estimate_strategy(single, shape, no_ckpt[False], overhead=0).total)  # only checkpointed inputs change
