"""``deepseek advise --master-weights [--grad-accum N]``: the bytes per parameter of
``precision.master_weights`` (bf16 parameters and gradients, fp32 master + ``m`` + ``v`` in the
optimizer, an fp32 gradient sum under accumulation), checked against the tensors
:class:`~deepseek.training.master_weights.MasterWeightAdamW` really holds; the rows that offer it;
gradient accumulation; refusals of what cannot run, one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from deepseek.advise.estimate import (
    STRATEGIES,
    StateBytes,
    TrainSetup,
    activation_bytes,
    estimate_all,
    estimate_strategy,
    shape_from_config,
    shape_from_params,
    state_bytes,
)
from deepseek.advise.recommend import recommend
from deepseek.models import GPT, GPTConfig
from deepseek.models.presets import preset_config
from deepseek.training.master_weights import MasterWeightAdamW

SPEC = {s.key: s for s in STRATEGIES}
GiB = 1024**3
BF16 = TrainSetup(2048, 4, "bf16", gpus=1)
MASTER = replace(BF16, master_weights=True)


def test_bytes_per_parameter_against_plain_autocast() -> None:
    single = SPEC["single"]
    assert state_bytes(single, BF16) == StateBytes(2, 4, 12)  # autocast: fp32 grads; 18 B
    assert state_bytes(single, MASTER) == StateBytes(2, 2, 12)  # bf16 grads; 16 B
    assert state_bytes(single, replace(MASTER, grad_accum=4)) == StateBytes(2, 2, 16)  # + fp32 sum; 20 B
    assert state_bytes(single, replace(BF16, grad_accum=4)) == StateBytes(2, 4, 12)  # sums in .grad itself
    assert [state_bytes(single, s).total for s in (BF16, MASTER, replace(MASTER, grad_accum=2))] == [18, 16, 20]


@pytest.mark.parametrize("accumulation", [1, 4])
def test_the_counts_are_the_tensors_the_optimizer_keeps(accumulation: int) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, d_model=32, n_heads=2, n_layers=2, max_seq_len=16))
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    opt = MasterWeightAdamW(params, accumulation=accumulation, fused=False)
    idx = torch.randint(0, 64, (2, 16))
    model(idx, idx).backward()
    grads = [p.grad for p in params if p.grad is not None]
    if accumulation > 1:  # folded into the fp32 sum at once; no bf16 gradient stays
        assert grads == []
        for _ in range(accumulation - 1):
            model(idx, idx).backward()
        grads = [p.grad for p in params]  # the sum, rounded once, after the step's last backward
    state = [t for p in params for t in opt.state[p].values() if isinstance(t, torch.Tensor) and t.dim()]
    measured = StateBytes(
        weights=sum(p.numel() * p.element_size() for p in params) / n,
        gradients=sum(g.numel() * g.element_size() for g in grads) / n,
        optimizer=sum(t.numel() * t.element_size() for t in state) / n,
    )
    setup = replace(MASTER, grad_accum=accumulation)
    assert measured == state_bytes(SPEC["single"], setup) == StateBytes(2, 2, 12 if accumulation == 1 else 16)


def test_the_single_row_under_master_weights() -> None:
    shape = shape_from_params(1e9, layers=24, hidden=1792, heads=16, vocab_size=256, seq_len=2048)
    p = shape.n_params
    for accum, optimizer in ((1, 12), (8, 16)):
        setup = replace(MASTER, grad_accum=accum, activation_checkpointing=True)
        est = estimate_strategy(SPEC["single"], shape, setup, overhead=GiB)
        assert (est.weights, est.gradients, est.optimizer) == (int(2 * p), int(2 * p), int(optimizer * p))
        assert est.bytes_per_param == {"weights": 2, "gradients": 2, "optimizer": optimizer}
        assert not est.grads_persist  # the bf16 gradients never wait beside the next micro-batch
        # The residual stream is bf16 (bf16 embeddings), so each checkpointed block input is 2 B.
        assert est.activations == activation_bytes(shape, setup, residual_in_compute_dtype=True).total
        assert est.activations < activation_bytes(shape, setup).total
        assert est.total == est.weights + est.optimizer + GiB + max(est.gradients, est.activations)


def test_accumulation_keeps_autocast_gradients_beside_the_next_micro_batch() -> None:
    shape = shape_from_config(preset_config("small"), "small")
    one = estimate_strategy(SPEC["single"], shape, BF16, overhead=0)
    four = estimate_strategy(SPEC["single"], shape, replace(BF16, grad_accum=4), overhead=0)
    assert not one.grads_persist and one.total == one.weights + one.optimizer + max(one.gradients, one.activations)
    assert four.grads_persist and four.total == four.weights + four.optimizer + four.gradients + four.activations


def test_only_the_rows_that_offer_master_weights_are_estimated() -> None:
    shape = shape_from_config(preset_config("small"), "small")
    assert [s.key for s in STRATEGIES if s.master_weights] == ["single"]
    assert [e.key for e in estimate_all(shape, MASTER, gpu_memory=80 * GiB)] == ["single"]
    assert len(estimate_all(shape, BF16, gpu_memory=80 * GiB)) == len(STRATEGIES)


def test_the_rows_that_offer_it_are_the_strategies_that_support_it() -> None:
    """The advisor's rows and the strategies' ``supports_master_weights`` say the same."""
    from deepseek.advise.engines import row_engines
    from deepseek.plugins.host import get_host

    host = get_host()
    installed = {c.name for c in host.components("strategy")}
    for row, engine in row_engines(host).items():
        if engine.strategy in installed:
            cls = host.resolve("strategy", engine.strategy).load()
            assert SPEC[row].master_weights == cls.supports_master_weights, row


def test_nothing_fits_with_master_weights_recommends_core_and_says_what_would() -> None:
    shape = shape_from_params(1e9, layers=24, hidden=1792, heads=16, vocab_size=256, seq_len=1024)
    setup = replace(MASTER, seq_len=1024, grad_accum=4)
    kw = {"gpu_memory": 24 * GiB, "headroom": 0.1, "overhead": GiB, "host_memory": 2048 * GiB}
    rec = recommend(shape, setup, ("text",), estimate_all(shape, setup, **kw), **kw)
    assert (rec.edition, rec.strategy) == ("core", None)
    assert rec.suggestions == ["fits with --activation-checkpointing (single)",
                               "fits with --batch 2 per GPU (single); keep the global batch with --grad-accum 8",
                               "fits without --master-weights (single+offload)"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", "advise", "--params", "1e9", "--gpu-memory", "80GiB",
                           *args], capture_output=True, text=True)


def test_cli_json() -> None:
    out = _run("--gpus", "1", "--master-weights", "--grad-accum", "2", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["setup"]["master_weights"] is True and report["setup"]["grad_accum"] == 2
    assert [(e["key"], e["bytes_per_param"]) for e in report["estimates"]] == [
        ("single", {"weights": 2, "gradients": 2, "optimizer": 16})]
    assert report["recommendation"]["strategy"] == "single"


@pytest.mark.parametrize(
    "args,line",
    [
        (["--gpus", "0"], "--master-weights: keeps bf16 parameters, but the precision is fp32 (auto on the CPU); "
                          "pass --precision bf16 or leave out --master-weights"),
        (["--gpus", "1", "--precision", "fp16"], "--master-weights: keeps bf16 parameters, but the precision is "
                                                 "fp16; pass --precision bf16 or leave out --master-weights"),
        (["--gpus", "4"], "--master-weights: only strategy 'single' keeps fp32 master weights, on one device, and "
                          "4 GPUs were given; pass --gpus 1 or leave out --master-weights"),
    ],
)
def test_what_cannot_run_is_one_line_and_exit_code_2(args: list[str], line: str) -> None:
    out = _run("--master-weights", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.strip() == f"error: {line}"
