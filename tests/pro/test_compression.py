"""DDP gradient compression: the bytes each rank hands to its all-reduces, counted by the comm
hook wrapper every step, shrink by the factor the method implies, and the loss stays close.

Expected factors: fp16 / bf16 send 2 bytes per fp32 gradient element (2x). PowerSGD rank 1 sends,
for every gradient matrix ``n x m`` that it compresses, ``P (n x 1)`` and ``Q (m x 1)``; vectors
(biases, LayerNorm) and matrices too small to gain 2x go uncompressed; the first
``powersgd_start_iter`` steps are plain all-reduces. The test derives that count from the model's
parameter shapes on its own.
"""

from __future__ import annotations

import pytest
from _prohelpers import POWERSGD, losses

from deepseek.training.checkpoint import load_model_state


def _param_shapes(single_reference: dict) -> list[tuple[int, ...]]:
    state = load_model_state(single_reference["dir"] / "checkpoints" / "step-2" / "model.safetensors")
    return [tuple(t.shape) for k, t in state.items() if k != "lm_head.weight"]  # tied to wte.weight


def _powersgd_elements(shapes: list[tuple[int, ...]], rank: int, min_rate: float = 2.0) -> int:
    total = 0
    for shape in shapes:
        n = shape[0]
        m = 1
        for d in shape[1:]:
            m *= d
        r = min(n, m, rank)
        total += (n + m) * r if (n + m) * r * min_rate < n * m else n * m
    return total


@pytest.mark.parametrize("name", ["ddp_fp16", "ddp_bf16"])
def test_half_precision_halves_bytes(name: str, pro_runs: dict, single_reference: dict) -> None:
    numel = sum(_numel(s) for s in _param_shapes(single_reference))
    for record in pro_runs["records"][name]:
        assert record["comm_bytes_uncompressed"] == numel * 4
        assert record["comm_bytes"] == numel * 2
        assert record["comm_reduction"] == 0.5
    # 16-bit gradients, fp32 everything else: a few steps stay within 1e-3 of single.
    ref = losses(single_reference["records"])[: len(pro_runs["records"][name])]
    assert losses(pro_runs["records"][name]) == pytest.approx(ref, rel=1e-3)


def test_powersgd_rank1_bytes_match_the_matrix_shapes(pro_runs: dict, single_reference: dict) -> None:
    shapes = _param_shapes(single_reference)
    numel = sum(_numel(s) for s in shapes)
    expected = _powersgd_elements(shapes, POWERSGD["powersgd_rank"]) * 4
    records = pro_runs["records"]["ddp_powersgd"]
    start = POWERSGD["powersgd_start_iter"]
    for record in records[:start]:  # warm-up: plain all-reduce
        assert record["comm_bytes"] == record["comm_bytes_uncompressed"] == numel * 4
    for record in records[start:]:
        assert record["comm_bytes_uncompressed"] == numel * 4
        assert record["comm_bytes"] == expected
    reduction = 1 - expected / (numel * 4)
    assert records[-1]["comm_reduction"] == pytest.approx(reduction)
    assert reduction > 0.9, f"tiny model, rank 1: {reduction:.3f}"


def test_powersgd_loss_stays_close(pro_runs: dict, single_reference: dict) -> None:
    got = losses(pro_runs["records"]["ddp_powersgd"])
    ref = losses(single_reference["records"])[: len(got)]
    start = POWERSGD["powersgd_start_iter"]
    assert got[:start + 1] == pytest.approx(ref[:start + 1], rel=1e-5)  # compression acts from step start+1 on
    assert got[-1] == pytest.approx(ref[len(got) - 1], rel=0.02)
    assert got[-1] < got[0]


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_counting_hook_rejects_unknown_method() -> None:
    from deepseek_pro.compression import CountingHook

    with pytest.raises(ValueError, match="unknown compression 'zip'"):
        CountingHook("zip")
