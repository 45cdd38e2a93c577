"""The shape of a GPT as the advisor's memory model sees it: parameter counts per part, from a
``GPTConfig`` or guessed from a parameter count (plain arithmetic, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from deepseek.errors import UsageError

# GPT-3 family shapes (Brown et al. 2020, table 2.1): (parameters, layers, d_model, heads).
# Used to guess a layer shape when only a parameter count is given.
_GPT3_SHAPES: tuple[tuple[float, int, int, int], ...] = (
    (125e6, 12, 768, 12), (350e6, 24, 1024, 16), (760e6, 24, 1536, 16), (1.3e9, 24, 2048, 16),
    (2.7e9, 32, 2560, 32), (6.7e9, 32, 4096, 32), (13e9, 40, 5120, 40), (175e9, 96, 12288, 96),
)


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a GPT the memory model needs. ``n_params`` is authoritative."""

    n_params: int
    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    vocab_size: int = 256
    max_seq_len: int = 2048
    source: str = "params"

    @property
    def layer_params(self) -> int:
        """Parameters of one Transformer block (weights and biases)."""
        h, f = self.d_model, self.d_ff
        return 4 * h * h + 2 * h * f + 9 * h + f

    @property
    def tp_split_params(self) -> int:
        """Parameters tensor parallelism splits over the GPUs: every block's qkv, projection and
        FFN weights and the column-parallel biases (the rest is whole on each GPU)."""
        h, f = self.d_model, self.d_ff
        return self.n_layers * (4 * h * h + 2 * h * f + 3 * h + f)

    @property
    def tp_split_share(self) -> float:
        """The share of the parameters tensor parallelism splits: :attr:`tp_split_params` over the
        shape's own count (blocks, tables, final norm). A ``--params`` count is authoritative and
        its shape a plausible one (a GPT-3 family member's within 1.5x, a width rounded to 128),
        so the share, not the count, carries over: 1e9 parameters on GPT-3 XL's 1.3e9-parameter
        shape split no more than they have."""
        counted = self.n_layers * self.layer_params + self.embedding_params + 2 * self.d_model
        return min(1.0, self.tp_split_params / counted)

    @property
    def embedding_params(self) -> int:
        """Token + position tables (the token table doubles as the tied LM head)."""
        return (self.vocab_size + self.max_seq_len) * self.d_model


def gpt_param_count(
    *, vocab_size: int, d_model: int, n_layers: int, d_ff: int, max_seq_len: int,
    bias: bool = True, tie_embeddings: bool = True, attn_width: int | None = None,
) -> int:
    """Parameters of :class:`deepseek.models.GPT`, counted without building it (``attn_width``:
    ``n_heads * head_dim``, below ``d_model`` after head pruning; default ``d_model``)."""
    h, f, a = d_model, d_ff, d_model if attn_width is None else attn_width
    per_layer = 4 * h * a + 2 * h * f + 2 * h  # qkv, proj, fc, fc-proj weights; 2 LN weights
    if bias:
        per_layer += 3 * a + h + f + h + 2 * h  # qkv, proj, fc, fc-proj biases; 2 LN biases
    n = n_layers * per_layer + vocab_size * h + max_seq_len * h + h + (h if bias else 0)
    if not tie_embeddings:
        n += vocab_size * h
    return n


def shape_from_config(config: Any, source: str) -> ModelShape:
    """Shape of a ``GPTConfig`` (anything with its fields), parameters counted analytically."""
    d_ff = config.d_ff or 4 * config.d_model
    n = gpt_param_count(
        vocab_size=config.vocab_size, d_model=config.d_model, n_layers=config.n_layers, d_ff=d_ff,
        max_seq_len=config.max_seq_len, bias=config.bias, tie_embeddings=config.tie_embeddings,
    )
    return ModelShape(
        n_params=n, n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
        d_ff=d_ff, vocab_size=config.vocab_size, max_seq_len=config.max_seq_len, source=source,
    )


SHAPE_SLACK = 10
"""How many times ``--params`` the shape given with it (``12 L d^2`` in its blocks, ``V d`` in its
embedding) may hold before it is refused as not that model's."""


def shape_from_params(
    n_params: float, *, layers: int | None = None, hidden: int | None = None,
    heads: int | None = None, vocab_size: int = 256, seq_len: int = 2048,
) -> ModelShape:
    """A plausible GPT shape for ``n_params``: the nearest GPT-3 family member's shape when within
    1.5x of it; otherwise its depth, with the width solved from ``P ~= 12 L d^2`` (rounded to a
    multiple of 128). ``layers``/``hidden``/``heads`` override."""
    if not (isinstance(n_params, (int, float)) and math.isfinite(n_params) and n_params >= 1):
        raise UsageError(f"--params: need a positive parameter count such as 1.3e9, got {n_params!r}")
    given = layers is not None or hidden is not None
    for opt, value in (("--layers", layers), ("--hidden", hidden), ("--heads", heads)):
        if value is not None and value <= 0:
            raise UsageError(f"{opt}: must be a positive integer, got {value}")
    ref_n, ref_layers, ref_hidden, ref_heads = min(_GPT3_SHAPES, key=lambda s: abs(math.log(s[0] / n_params)))
    close = 2 / 3 <= n_params / ref_n <= 3 / 2 and layers is None and hidden is None
    if close:  # a GPT-3 family size: take its shape as it is
        layers, hidden = ref_layers, ref_hidden
        heads = heads or ref_heads
    if layers is None and hidden is not None:
        layers = max(1, round(n_params / (12 * hidden * hidden)))
    layers = layers or ref_layers
    if hidden is None:
        hidden = max(128, round(math.sqrt(n_params / (12 * layers)) / 128) * 128)
    if heads is None:
        head_dim = 64 if hidden <= 1024 else 128
        heads = max(1, hidden // head_dim) if hidden % head_dim == 0 else 1
    if hidden % heads:
        raise UsageError(f"--heads: hidden size {hidden} is not divisible by {heads} heads; pick a divisor")
    # a shape given that holds far more than --params (--layers 10**30) was estimated as if it held them
    blocks, embedding = 12 * layers * hidden * hidden, vocab_size * hidden
    if (given or embedding > SHAPE_SLACK * n_params) and blocks + embedding > SHAPE_SLACK * n_params:
        raise UsageError(f"--layers {layers} x --hidden {hidden} (vocabulary {vocab_size}) hold about "
                         f"{blocks + embedding:.3g} parameters, more than {SHAPE_SLACK}x --params {n_params:.3g}; "
                         "give a shape that fits --params, or leave --layers/--hidden/--vocab out")
    return ModelShape(
        n_params=int(n_params), n_layers=layers, d_model=hidden, n_heads=heads, d_ff=4 * hidden,
        vocab_size=vocab_size, max_seq_len=seq_len, source="params",
    )
