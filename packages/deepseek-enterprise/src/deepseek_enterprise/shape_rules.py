"""The shape rules of the enterprise encoders' and fusion methods' options that timm and torch
check late (at the first forward) or not at all: each is checked where the options are made,
so a config that breaks one is refused when it loads, in one line naming the field.

- attention heads must divide the width they split (:func:`heads_problem`): ``nn.MultiheadAttention``
  and torchaudio's ``Conformer`` refuse it only when the model is built, and timm's Swin silently
  narrows each block's attention to ``heads * (width // heads)`` channels;
- a Swin's image, in patches, must halve evenly at each later stage (:func:`swin_problem`), and
  each stage's width (``embed_dim * 2**stage``) must split into that stage's heads.
"""

from __future__ import annotations

from collections.abc import Sequence

from deepseek.config.validate import head_counts


def heads_problem(width_name: str, width: int, heads_name: str, heads: int) -> str | None:
    """What is wrong with ``heads`` attention heads over ``width`` channels (``None``: they divide
    it): ``d_model=64 is not divisible by n_heads=5; give n_heads among 1, 2, 4, 8, 16, 32, 64``."""
    if width % heads == 0:
        return None
    return f"{width_name}={width} is not divisible by {heads_name}={heads}; {heads_fix(heads_name, width)}"


def heads_fix(heads_name: str, width: int) -> str:
    """How to fix heads that do not divide ``width``: the counts that do (up to 64, as core's
    ``gpt`` lists them: :func:`~deepseek.config.validate.head_counts`)."""
    return f"give {heads_name} among {head_counts(width)}"


def swin_problem(img_size: int, img_width: int | None, patch_size: int, embed_dim: int,
                 depths: Sequence[int], num_heads: Sequence[int]) -> str | None:
    """What is wrong with the shape keys of a small-image Swin (``vision.swin`` without
    ``timm_name``), as ``<key>: <problem>`` (``None``: nothing)."""
    if len(depths) != len(num_heads):
        return f"num_heads: one entry per stage ({len(depths)}), got {list(num_heads)}"
    halvings = 2 ** (len(depths) - 1)
    for key, side in (("img_size", img_size), ("img_width", img_width)):
        if side is not None and (side % patch_size or (side // patch_size) % halvings):
            return (f"{key}: {side} px in {patch_size}-px patches must give a grid divisible by {halvings} (one "
                    f"halving per later stage); change {key}, patch_size or depths")
    for stage, heads in enumerate(num_heads):
        width = embed_dim * 2 ** stage
        if width % heads:
            return (f"num_heads: {list(num_heads)}: stage {stage} is {width} wide (embed_dim {embed_dim} x {2 ** stage}), "
                    f"not divisible by num_heads[{stage}]={heads}; {heads_fix(f'num_heads[{stage}]', width)}, or "
                    "change embed_dim")
    return None
