"""The CUDA form of :class:`~deepseek.training.master_weights.MasterWeightAdamW`'s update: a
Triton kernel that reads the bf16 gradient once, updates the fp32 master and both AdamW moments in
registers, and writes master, moments and the rounded bf16 parameter: 14 bytes read and 14
written per parameter (bf16 gradient and parameter, fp32 master and moments), the same traffic as
torch's fused AdamW over fp32 parameters, with no cast passes around it.

Two launch forms, with the same arithmetic (:func:`_adamw_block`) on the same ``BLOCK``-element
blocks, so their results are bit-identical:

- :func:`fused_update`: one launch per parameter (``optimizer.master_update = "per_parameter"``);
- :class:`MultiTensorUpdate`: one launch over many parameters (``"multi_tensor"``). Each program
  reads its block's row of two device tables: which tensor (``int32``) and the block's first
  element in it (``int64``), then that tensor's row of a third: the int64 addresses of parameter,
  gradient, master and moments and the element count. The addresses become typed pointers inside
  the kernel (``int64.to(tl.pointer_type(...))``, Triton's int-to-pointer cast, as its
  grouped-GEMM tutorial does), so no parameter needs to move into a flat buffer. Offsets are
  int64 throughout: a tensor of more than 2**31 elements is addressed past 2**31 correctly.
  Whole blocks run without a mask and with 16-byte alignment hints on the cast pointers, so they
  compile to the 16-byte loads and stores the per-parameter kernel gets from Triton's argument
  specialization; a tensor off 16-byte alignment gets its own per-parameter launch.

Arithmetic follows torch AdamW (decoupled decay, ``lerp`` for the first moment, bias corrections
computed on the host); ``scale`` is the clip coefficient's reciprocal on the device
(:func:`deepseek.training.clip.clip_gradients`), read by the kernel, so nothing syncs. Imported
only when the Triton form is asked for (Triton comes with torch's CUDA builds; its interpreter,
``TRITON_INTERPRET=1``, runs both forms on CPU tensors).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 2048
ROW = tl.constexpr(6)
"""int64 entries per tensor in :class:`MultiTensorUpdate`'s address table: the addresses of
parameter, gradient, master, first and second moment, then the element count."""


@triton.jit
def _load(ptr, offsets, n, MASKED: tl.constexpr):
    if MASKED:
        return tl.load(ptr + offsets, mask=offsets < n, other=0.0)
    else:
        return tl.load(ptr + offsets)


@triton.jit
def _store(ptr, offsets, value, n, MASKED: tl.constexpr):
    if MASKED:
        tl.store(ptr + offsets, value, mask=offsets < n)
    else:
        tl.store(ptr + offsets, value)


@triton.jit
def _adamw_block(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, offsets, n, decay_factor, step_size,
                 bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE: tl.constexpr, MASKED: tl.constexpr):
    """The update of the elements at ``offsets`` (int64; ``MASKED``: those below ``n`` only, else
    all of them): both kernels' arithmetic."""
    g = _load(g_ptr, offsets, n, MASKED).to(tl.float32)
    if HAS_SCALE:
        g = tl.div_rn(g, tl.load(scale_ptr))
    w = _load(w_ptr, offsets, n, MASKED)
    m = _load(m_ptr, offsets, n, MASKED)
    v = _load(v_ptr, offsets, n, MASKED)
    w = w * decay_factor
    m = m + (1.0 - beta1) * (g - m)
    v = v * beta2 + (1.0 - beta2) * g * g
    denom = tl.div_rn(tl.sqrt_rn(v), bias_correction2_sqrt) + eps  # IEEE rounding, as torch's ops
    w = w - step_size * tl.div_rn(m, denom)
    _store(w_ptr, offsets, w, n, MASKED)
    _store(m_ptr, offsets, m, n, MASKED)
    _store(v_ptr, offsets, v, n, MASKED)
    _store(p_ptr, offsets, w.to(p_ptr.dtype.element_ty), n, MASKED)


@triton.jit
def _adamw_master_kernel(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, n, lr, decay_factor, step_size,
                         bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    _adamw_block(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, offsets, n, decay_factor, step_size,
                 bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE, True)


@triton.jit
def _adamw_multi_kernel(table_ptr, which_ptr, start_ptr, scale_ptr, decay_factor, step_size, bias_correction2_sqrt,
                        beta1, beta2, eps, PARAM: tl.constexpr, GRAD: tl.constexpr, HAS_SCALE: tl.constexpr,
                        BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    row = table_ptr + tl.load(which_ptr + pid).to(tl.int64) * ROW
    # The host passes only 16-byte aligned addresses, and blocks start at multiples of BLOCK: the
    # hints the compiler needs for 16-byte loads and stores (it infers them for the per-parameter
    # kernel's pointer arguments, but knows nothing of an address read from memory; the hint
    # must sit on the pointer: one on the int64 is lost in the cast).
    p_ptr = tl.multiple_of(tl.load(row).to(tl.pointer_type(PARAM)), 16)
    g_ptr = tl.multiple_of(tl.load(row + 1).to(tl.pointer_type(GRAD)), 16)
    w_ptr = tl.multiple_of(tl.load(row + 2).to(tl.pointer_type(tl.float32)), 16)
    m_ptr = tl.multiple_of(tl.load(row + 3).to(tl.pointer_type(tl.float32)), 16)
    v_ptr = tl.multiple_of(tl.load(row + 4).to(tl.pointer_type(tl.float32)), 16)
    n = tl.load(row + 5)
    start = tl.multiple_of(tl.load(start_ptr + pid), BLOCK)
    offsets = start + tl.arange(0, BLOCK).to(tl.int64)
    if start + BLOCK <= n:  # a whole block (all but a tensor's last): no mask, which would stop vector access
        _adamw_block(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, offsets, n, decay_factor, step_size,
                     bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE, False)
    else:
        _adamw_block(p_ptr, g_ptr, w_ptr, m_ptr, v_ptr, scale_ptr, offsets, n, decay_factor, step_size,
                     bias_correction2_sqrt, beta1, beta2, eps, HAS_SCALE, True)


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


_TRITON_DTYPES = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16, torch.float32: tl.float32}


def block_table(numels: list[int], block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """For tensors of ``numels`` elements cut into ``block``-element blocks: each block's tensor
    (``int32``) and first element in it (``int64``), in tensor order (host tensors)."""
    counts = torch.tensor([triton.cdiv(n, block) for n in numels], dtype=torch.int64)
    which = torch.repeat_interleave(torch.arange(len(numels), dtype=torch.int32), counts)
    first = torch.cumsum(counts, 0) - counts  # each tensor's first block
    start = (torch.arange(int(counts.sum()), dtype=torch.int64) - first[which.long()]) * block
    return which, start


class MultiTensorUpdate:
    """:func:`fused_update` over many parameters in one launch (one group's, at one step count).
    A tensor whose address is not a multiple of 16 bytes (a view into a larger storage; torch's
    allocations all are) gets its own :func:`fused_update` launch instead.

    Keeps the device tables between calls: the block table while the tensors' sizes stay the
    same, the address table while their addresses do (a gradient freed and allocated again by
    torch's caching allocator usually comes back at the same address). A changed table goes to
    the device from pinned host memory without waiting (``non_blocking``; torch's pinned-memory
    cache keeps the host block until the copy has run), so the step never syncs the host."""

    def __init__(self) -> None:
        self._blocks: dict[tuple[torch.device, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]] = {}
        self._addresses: dict[tuple[torch.device, tuple[int, ...]], torch.Tensor] = {}

    def __call__(self, ps: list[torch.Tensor], gs: list[torch.Tensor], ws: list[torch.Tensor],
                 ms: list[torch.Tensor], vs: list[torch.Tensor], lr: float, scale: torch.Tensor | None,
                 bias_correction1: float, bias_correction2_sqrt: float, beta1: float, beta2: float, eps: float,
                 weight_decay: float) -> None:
        if not ps:
            return
        first = ps[0]
        device, numels, flat = first.device, [], []
        for tensors in zip(ps, gs, ws, ms, vs, strict=True):
            p, g = tensors[0], tensors[1]
            if not all(t.is_contiguous() for t in tensors):
                raise ValueError("MasterWeightAdamW: parameters, gradients and their state must be contiguous on CUDA")
            if (p.dtype != first.dtype or g.dtype != gs[0].dtype or p.device != device
                    or any(t.dtype != torch.float32 for t in tensors[2:])):
                raise ValueError("MasterWeightAdamW: one multi-tensor launch takes parameters (and gradients) of one "
                                 "dtype on one device, with fp32 masters and moments")
            addresses = [t.data_ptr() for t in tensors]
            if any(a % 16 for a in addresses):  # a view into storage: the kernel's 16-byte hints would not hold
                fused_update(*tensors, lr, scale, bias_correction1, bias_correction2_sqrt, beta1,
                             beta2, eps, weight_decay)
                continue
            numels.append(p.numel())
            flat.extend((*addresses, p.numel()))
        which, start = self._block_table(device, tuple(numels))
        if not which.numel():  # nothing left to launch (empty or unaligned tensors only)
            return
        table = self._address_table(device, tuple(flat))
        _adamw_multi_kernel[(which.numel(),)](
            table, which, start, scale if scale is not None else ws[0], 1.0 - lr * weight_decay,
            lr / bias_correction1, bias_correction2_sqrt, beta1, beta2, eps, PARAM=_TRITON_DTYPES[first.dtype],
            GRAD=_TRITON_DTYPES[gs[0].dtype], HAS_SCALE=scale is not None, BLOCK=BLOCK)

    def _block_table(self, device: torch.device, numels: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, numels)
        if key not in self._blocks:
            which, start = block_table(list(numels))
            self._blocks[key] = (_to_device(which, device), _to_device(start, device))
        return self._blocks[key]

    def _address_table(self, device: torch.device, flat: tuple[int, ...]) -> torch.Tensor:
        key = (device, flat)
        table = self._addresses.get(key)
        if table is None:
            table = _to_device(torch.tensor(flat, dtype=torch.int64), device)
            if len(self._addresses) >= 8:  # gradients at new addresses every step: keep the latest few
                self._addresses.pop(next(iter(self._addresses)))
            self._addresses[key] = table
        return table


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``host`` on ``device`` without a host sync: through pinned memory to a CUDA device (a
    pageable source may make the copy wait for the stream's earlier work)."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
