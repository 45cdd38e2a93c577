"""CPU backend pass: short causal attention as two batched GEMMs instead of the flash kernel."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from deepseek.graph.match import match_attention
from deepseek.graph.passes import GraphPass, add_constant, finish, replace_node

MAX_SCORES = 1 << 23
"""Largest ``batch * heads * T * S`` rewritten (32 MiB of fp32 scores): beyond it the
flash kernel's tiling, which never materialises the scores, is the better trade."""


def bmm_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """``softmax(q k^T * scale + mask) v`` for ``(..., T, d)`` inputs with one ``baddbmm``,
    a softmax and one ``bmm``; ``mask`` is an additive ``(T, S)`` tensor (or ``None``)."""
    t, s = q.shape[-2], k.shape[-2]
    q3 = q.reshape(-1, t, q.shape[-1])
    k3 = k.reshape(-1, s, k.shape[-1]).transpose(1, 2)
    v3 = v.reshape(-1, s, v.shape[-1])
    if mask is None:
        scores = torch.bmm(q3, k3).mul_(scale)
    else:
        scores = torch.baddbmm(mask.expand(q3.shape[0], t, s), q3, k3, alpha=scale)
    out = torch.bmm(scores.softmax(-1), v3)
    return out.view(*q.shape[:-1], v.shape[-1])


class AttentionBMM(GraphPass):
    """Rewrite ``scaled_dot_product_attention`` on short sequences (no mask, or causal) into
    :func:`bmm_attention` with a pre-built causal mask. On 2-core CPUs at T=128 the flash
    kernel's blocking costs about twice the two GEMMs; the optimizer keeps whichever is faster."""

    name = "attention-bmm"
    description = "CPU: short causal/unmasked SDPA as baddbmm + softmax + bmm with a constant mask"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        views = [v for n in gm.graph.nodes if (v := match_attention(n)) is not None]
        tensors = [x for x in example_inputs if isinstance(x, torch.Tensor)]
        if not views or any(x.device.type != "cpu" for x in tensors):
            return None
        ShapeProp(gm).propagate(*example_inputs)
        masks: dict[tuple[int, int], str] = {}
        done = 0
        for view in views:
            node = view.node
            q, k, v = view.query, view.key, view.value
            metas = [x.meta.get("tensor_meta") for x in (q, k, v)]
            if any(m is None for m in metas) or view.attn_mask is not None:
                continue
            if view.dropout_p != 0.0 or view.enable_gqa:
                continue
            qm, km, vm = metas
            if qm.dtype != torch.float32 or len(qm.shape) < 3:
                continue
            if qm.shape[:-2] != km.shape[:-2] or km.shape[:-2] != vm.shape[:-2]:
                continue
            t, s = qm.shape[-2], km.shape[-2]
            causal = bool(view.is_causal)
            if math.prod(qm.shape[:-1]) * s > MAX_SCORES or (causal and t != s):
                continue
            scale = 1.0 / math.sqrt(qm.shape[-1]) if view.scale is None else float(view.scale)
            mask_node = None
            if causal:
                if (t, s) not in masks:
                    mask = torch.full((t, s), float("-inf")).triu(1)
                    masks[(t, s)] = add_constant(gm, f"causal_mask_{t}x{s}", mask)
                with gm.graph.inserting_before(node):
                    mask_node = gm.graph.get_attr(masks[(t, s)])
            replace_node(gm, node, bmm_attention, (q, k, v, mask_node, scale))
            done += 1
        if not done:
            return None
        self.record(f"rewrote {done} scaled_dot_product_attention call(s) as baddbmm + softmax + bmm")
        return finish(gm)
