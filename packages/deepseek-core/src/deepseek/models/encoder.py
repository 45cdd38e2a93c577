"""Bidirectional Transformer text encoder built from the GPT :class:`~deepseek.models.layers.Block`.

Registered as encoder ``text.transformer``::

    enc = deepseek.create_encoder("text.transformer", d_model=256)
    feats = enc(tokens, padding_mask=tokens == 0)   # (B, T, D)
"""

from __future__ import annotations

import torch
from torch import nn

from deepseek.errors import ConfigError
from deepseek.models.gpt import GPTConfig
from deepseek.models.layers import init_weights, make_blocks, run_blocks


class TextTransformerEncoder(nn.Module):
    """Byte-token encoder: token + learned position embeddings, ``n_layers`` pre-norm blocks
    with full (non-causal) attention, final LayerNorm. ``output_dim == d_model``.

    Options are validated like the GPT config (``ConfigError`` naming
    ``encoder.text.transformer.<field>``).
    """

    def __init__(
        self,
        *,
        vocab_size: int = 256,
        d_model: int = 256,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int | None = None,
        max_seq_len: int = 512,
        dropout: float = 0.0,
        bias: bool = True,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        try:
            c = GPTConfig(
                vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, n_layers=n_layers, d_ff=d_ff,
                max_seq_len=max_seq_len, dropout=dropout, bias=bias, tie_embeddings=False, norm_eps=norm_eps,
            )  # fmt: skip
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("model.", "encoder.text.transformer.", 1)) from None
        self.config = c
        self.output_dim = d_model
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.wpe = nn.Embedding(c.max_seq_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = make_blocks(c)
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias)
        self.activation_checkpointing = False
        init_weights(self, c.n_layers)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``(B, T, D)`` of token ids ``(B, T)``.

        ``padding_mask`` ``(B, T)`` bool is True at padding positions (PyTorch's
        ``key_padding_mask`` convention): no position attends to them, and their output rows are
        zero. A row that is all padding yields zeros.
        """
        pos = torch.arange(tokens.size(1), device=tokens.device)
        x = self.drop(self.wte(tokens) + self.wpe(pos))
        attn_mask = None
        if padding_mask is not None:
            keep = ~padding_mask.bool()
            # An all-padding row would give softmax over nothing (NaN); let it attend everywhere
            # (its output is zeroed below anyway).
            keep = keep | ~keep.any(dim=-1, keepdim=True)
            attn_mask = keep[:, None, None, :]
        x = run_blocks(
            self.blocks, x, checkpointing=self.activation_checkpointing, is_causal=False, attn_mask=attn_mask
        )
        x = self.ln_f(x)
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.bool()[..., None], 0.0)
        return x

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in backward."""
        self.activation_checkpointing = bool(enabled)
