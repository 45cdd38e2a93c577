"""The CUDA form of :class:`~deepseek.training.master_weights.MasterWeightAdamW`'s update: one
Triton kernel per parameter that reads the bf16 gradient once, updates the fp32 master and both
AdamW moments in registers, and writes master, moments and the rounded bf16 parameter: 14 bytes
read and 14 written per parameter (bf16 gradient and parameter, fp32 master and moments), the
same traffic as torch's fused AdamW over fp32 parameters, with no cast passes around it.

Arithmetic follows torch AdamW (decoupled decay, ``lerp`` for the first moment, bias corrections
computed on the host); ``scale`` is the clip coefficient's reciprocal on the device
(:func:`deepseek.training.clip.clip_gradients`), read by the kernel, so nothing syncs. Imported
only when parameters are on CUDA (Triton comes with torch's CUDA builds).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 2048


@triton.jit
def _adamw_master_kernel(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, n, lr, decay_factor, step_size,
                         bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    g = tl.load(g_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_SCALE:
        g = tl.div_rn(g, tl.load(scale_ptr))
    w = tl.load(w_ptr + offsets, mask=mask, other=0.0)
    m = tl.load(m_ptr + offsets, mask=mask, other=0.0)
    v = tl.load(v_ptr + offsets, mask=mask, other=0.0)
    w = w * decay_factor
    m = m + (1.0 - beta1) * (g - m)
    v = v * beta2 + (1.0 - beta2) * g * g
    denom = tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt) + eps  # IEEE rounding, as torch's ops
    w = w - step_size * tl.div_rn(m, denom)
    tl.store(w_ptr + offsets, w, mask=mask)
    tl.store(m_ptr + offsets, m, mask=mask)
    tl.store(v_ptr + offsets, v, mask=mask)
    tl.store(p_ptr + offsets, w.to(p_ptr.dtype.element_ty), mask=mask)


def fused_update(p: torch.Tensor, g: torch.Tensor, w: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                 lr: float, scale: torch.Tensor | None, bias_correction1: float, bias_correction2_sqrt: float,
                 beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """:func:`deepseek.training.master_weights._update` as one kernel (contiguous tensors)."""
    if not (p.is_contiguous() and g.is_contiguous()):
        raise ValueError("MasterWeightAdamW: parameters and gradients must be contiguous on CUDA")
    n = p.numel()
    _adamw_master_kernel[(triton.cdiv(n, BLOCK),)](
        p, g, w, m, v, scale if scale is not None else w, n, lr, 1.0 - lr * weight_decay, lr / bias_correction1,
        bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE=scale is not None, BLOCK=BLOCK)
