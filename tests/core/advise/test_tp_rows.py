"""The advisor's tensor-parallel rows ``tp`` and ``tp+sp`` (deepseek-pro's ``tp`` strategy): what
they split, when they are offered, and when the advisor picks them. The per-layer activation
formula under tensor parallelism is checked against the tensors autograd saves on 2 processes in
tests/pro/test_tp.py."""

from __future__ import annotations

import pytest

from deepseek.advise.engines import Engine
from deepseek.advise.estimate import (
    GiB,
    TrainSetup,
    activation_bytes,
    estimate_all,
    shape_from_params,
)
from deepseek.advise.recommend import recommend

ENGINES = {k: Engine(k, "pro") for k in ("ddp", "zero1", "zero2", "zero3", "zero3+offload", "tp", "tp+sp")}
ENGINES["single"] = Engine("single", "core")


def _rows(setup: TrainSetup, shape=None) -> dict:
    shape = shape or shape_from_params(1.3e9)
    return {e.key: e for e in estimate_all(shape, setup, gpu_memory=80 * GiB, engines=ENGINES)}


def test_tp_splits_the_block_matmuls_and_keeps_the_rest_whole() -> None:
    shape = shape_from_params(1.3e9)
    n = 4
    rows = _rows(TrainSetup(2048, 1, "bf16", gpus=n), shape)
    ddp, tp = rows["ddp"], rows["tp"]
    split, h = shape.tp_split_params, shape.d_model
    whole = shape.n_layers * (6 * h) + (shape.vocab_size + shape.max_seq_len) * h + 2 * h  # norms, row biases, tables
    assert shape.tp_split_share == split / (split + whole)
    assert 0.99 < shape.tp_split_share < 1  # embeddings, norms and row biases stay whole
    per_gpu = shape.n_params * (1 - shape.tp_split_share + shape.tp_split_share / n)
    for part, per_param in (("weights", 2), ("gradients", 4), ("optimizer", 12)):
        assert getattr(tp, part) == int(per_param * per_gpu)
        assert getattr(tp, part) < getattr(ddp, part) / 3
    assert tp.step_temp == int(4 * per_gpu)  # foreach AdamW over DTensor parameters
    assert rows["tp+sp"].weights == tp.weights


@pytest.mark.parametrize("params", [1e9, 2e9, 3.5e8])
def test_a_params_count_below_its_shapes_own_count_splits_no_more_than_it_has(params: float) -> None:
    """--params 1e9 takes GPT-3 XL's shape (1.2e9 parameters in its blocks alone): the tp rows
    subtracted the shape's split count from the 1e9 and showed negative weights, gradients and
    optimizer state (-0.11 GiB of weights on 8 GPUs)."""
    shape = shape_from_params(params)
    rows = _rows(TrainSetup(2048, 1, "bf16", gpus=8), shape)
    share = shape.tp_split_share
    for part, per_param in (("weights", 2), ("gradients", 4), ("optimizer", 12)):
        assert getattr(rows["tp"], part) == int(per_param * params * (1 - share + share / 8)) > 0
        assert getattr(rows["tp"], part) > getattr(rows["ddp"], part) / 8


def test_tp_activations_follow_the_split_and_sequence_parallel_splits_the_norms() -> None:
    shape = shape_from_params(1.3e9)
    setup = TrainSetup(2048, 1, "bf16")
    s, b, h, f, a = 2048, 1, shape.d_model, shape.d_ff, shape.n_heads
    whole = activation_bytes(shape, setup)
    assert whole.per_layer == s * b * (8 * h + 2 * (6 * h + 2 * f) + 4 * a + 16)  # unchanged at tp = 1
    tp = activation_bytes(shape, setup, tp=2)
    assert tp.per_layer == s * b * (8 * h + 16 + 4 * h + (2 * (4 * h + 2 * f) + 4 * a) / 2)
    sp = activation_bytes(shape, setup, tp=2, sequence_parallel=True)
    assert sp.per_layer == s * b * ((8 * h + 16) / 2 + 4 * h + (2 * (4 * h + 2 * f) + 4 * a) / 2)
    assert sp.per_layer < tp.per_layer < whole.per_layer
    assert "t = 2" in tp.formula and "(8h + 16)/t" in sp.formula


@pytest.mark.parametrize(("gpus", "offered"), [(1, False), (2, True), (8, True), (16, False)])
def test_tp_is_offered_within_one_node(gpus: int, offered: bool) -> None:
    rows = _rows(TrainSetup(2048, 1, "bf16", gpus=gpus))
    assert rows["tp"].applicable is offered and rows["tp+sp"].applicable is offered


def test_tp_needs_heads_that_split() -> None:
    shape = shape_from_params(1.3e9, heads=16)
    assert _rows(TrainSetup(2048, 1, "bf16", gpus=8), shape)["tp"].applicable
    odd = shape_from_params(1.3e9, heads=32, layers=24, hidden=2016)  # 32 heads, d_ff 8064: 3 does not divide
    assert not _rows(TrainSetup(2048, 1, "bf16", gpus=3), odd)["tp"].applicable


def test_advisor_picks_tp_when_activations_do_not_fit_under_zero3() -> None:
    shape = shape_from_params(1.3e9)
    setup = TrainSetup(4096, 16, "bf16", gpus=2)
    rows = _rows(setup, shape)
    assert not rows["zero3"].fits and not rows["zero3+offload"].fits and not rows["tp"].fits
    assert rows["tp+sp"].fits
    advice = recommend(shape, setup, ("text",), list(rows.values()), gpu_memory=80 * GiB, engines=ENGINES)
    assert advice.strategy == "tp+sp" and advice.engine == "tp+sp" and advice.edition == "pro"
    assert any("not activations" in r for r in advice.reasons)
    # Half the micro-batch: ZeRO holds it and, faster, stays the choice (tp fits too).
    small = TrainSetup(4096, 8, "bf16", gpus=2)
    rows = _rows(small, shape)
    assert rows["tp"].fits and not rows["ddp"].fits
    assert recommend(shape, small, ("text",), list(rows.values()), gpu_memory=80 * GiB,
                     engines=ENGINES).strategy == "zero1"
