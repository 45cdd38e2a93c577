"""``bench train --profile``: kernel names sorted into categories (names seen on an H200)."""

from __future__ import annotations

import pytest

from deepseek.bench._profile import CATEGORIES, categorize


@pytest.mark.parametrize("kernel,category", [
    ("nvjet_sm90_tst_128x256_64x4_2x1_v_bz_coopA_NTN", "matmul"),
    ("cudnn_generated_fort_native_sdpa_sm90_flash_bprop_wgmma_f16_knob_26_64x64x128_1x4x1_cga1x1", "attention"),
    ("void cudnn::fusion::compute_dot_do_o_specialized<true, 128>(void const*", "attention"),
    ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous", "optimizer + clipping"),
    ("triton_poi_fused_gelu_gelu_backward_view_5", "fused elementwise / norm (compiled)"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float, float>(int, float, float const*",
     "elementwise / norm (eager)"),
    ("ncclDevKernel_AllReduce_Sum_f32_RING_LL", "communication"),
    ("Memcpy DtoD (Device -> Device)", "copies / memset"),
    ("some_kernel_nobody_has_named_yet", "other"),
])
def test_categorize(kernel: str, category: str) -> None:
    assert categorize(kernel) == category


def test_categories_are_distinct() -> None:
    names = [name for name, _ in CATEGORIES]
    assert len(set(names)) == len(names) and "other" not in names


def test_timeline_finds_gaps_and_exposed_communication() -> None:
    from deepseek.bench._profile import timeline

    us = 1000.0  # one millisecond in the profiler's microseconds
    kernels = [
        (0 * us, 4 * us, "nvjet_sm90_gemm"),          # compute 0-4
        (3 * us, 6 * us, "ncclDevKernel_AllReduce"),  # comm 3-6: 1 ms under compute, 2 ms exposed
        (6 * us, 7 * us, "triton_poi_fused_add"),     # compute 6-7
        (10 * us, 11 * us, "multi_tensor_apply_kernel"),  # 3 ms idle before it
        (11.5 * us, 12 * us, "nvjet_sm90_gemm"),      # 0.5 ms idle before it
    ]
    got = timeline(kernels, steps=1)
    assert got["gaps_ms"] == 3.5
    assert got["exposed_communication_ms"] == 2.0
    first, second = got["largest_gaps"]
    assert (first["ms"], first["after"], first["before"]) == (3.0, "triton_poi_fused_add", "multi_tensor_apply_kernel")
    assert (second["ms"], second["before"]) == (0.5, "nvjet_sm90_gemm")
    assert timeline(kernels, steps=2)["gaps_ms"] == 1.75
    assert timeline([], steps=1) == {"gaps_ms": 0.0, "largest_gaps": [], "exposed_communication_ms": 0.0}
