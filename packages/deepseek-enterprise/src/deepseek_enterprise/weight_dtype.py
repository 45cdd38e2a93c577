"""Derived float buffers that must follow the weights' dtype.

An engine that holds the weights in 16 bits may cast the parameters alone: DeepSpeed 0.19 keeps
every buffer in the dtype it was loaded with ("cast params only; preserve fp32 buffers") and runs
no autocast. timm's Swin computes each shifted-window block's attention mask once, as a buffer in
the weights' dtype at build time (fp32), and adds it to the relative-position bias (a parameter,
so 16-bit there). The sum is fp32 beside 16-bit queries, which CUDA's attention kernels refuse
("expected scalar type Float but found BFloat16"); the CPU's accepted it, so only a GPU run showed
it. The masks are 0 and -100, exact in bf16 and fp16.
"""

from __future__ import annotations

from typing import Any

import torch


def swin_masks_follow_weights(swin: Any) -> None:
    """Cast the shifted-window attention masks of timm ``SwinTransformer`` ``swin`` to its weights'
    dtype where they differ (once, after an engine cast the parameters; a no-op otherwise)."""
    dtype = swin.patch_embed.proj.weight.dtype
    for stage in swin.layers:
        for block in stage.blocks:
            mask = getattr(block, "attn_mask", None)  # timm builds it only for shifted blocks, or per call
            if isinstance(mask, torch.Tensor) and mask.is_floating_point() and mask.dtype != dtype:
                block.attn_mask = mask.to(dtype)
