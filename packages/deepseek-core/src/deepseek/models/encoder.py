"""The encoder contract, and core's encoder ``text.transformer``.

A registered encoder (``deepseek_register_encoders``) is a target carrying ``Options`` (a
dataclass of its keys), called as ``target(options)``; it returns an :class:`Encoder`: a module
mapping one modality's inputs (and an optional padding mask) to an :class:`EncoderOutput`, a
sequence of features ``(B, T, output_dim)`` and its padding mask ``(B, T)`` (True at padding,
PyTorch's convention; an input with nothing to mask gives an all-False mask). Names are
``modality.kind``: ``text.transformer``, ``vision.swin``, ``audio.conv_transformer``::

    enc = deepseek.create_encoder("text.transformer", d_model=256)
    out = enc(tokens, padding_mask=tokens == 0)   # out.features (B, T, 256), out.padding_mask (B, T)

The contract is checked where the framework meets an encoder: :func:`check_encoder` when one is
created (an :class:`Encoder` with a positive int ``output_dim``), :func:`check_output` on what
its forward returns (``multimodal.classifier`` checks every call; the contract test
``tests/contract/test_encoders_contract.py`` checks every registered encoder on its
:meth:`Encoder.example_inputs`). A violation is one line naming the encoder and the
distribution that registered it, what was wrong and the fix: a bug in the plugin, so a
:class:`~deepseek.errors.PluginError` (exit code 1, :func:`deepseek.plugins.calls.broken_answer`),
as for its broken ``check_inputs`` and ``keys_for_inputs`` answers. The user's keys are checked
before the encoder is built (its ``Options``): a value they refuse is a ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from deepseek.config.components import NoOptions
from deepseek.errors import ConfigError
from deepseek.models.gpt import GPTConfig
from deepseek.models.layers import init_weights, make_blocks, run_blocks
from deepseek.plugins.calls import broken_answer


class EncoderOutput(NamedTuple):
    """What every encoder returns."""

    features: torch.Tensor
    """``(B, T, output_dim)``; rows at padding are zero."""
    padding_mask: torch.Tensor
    """``(B, T)`` bool, True at padding positions."""


class Encoder(nn.Module):
    """Base class of modality encoders: ``forward(inputs, padding_mask=None) -> EncoderOutput``;
    ``output_dim`` is the feature width."""

    Options: ClassVar[type] = NoOptions
    output_dim: int

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward (default: nothing to recompute)."""

    def check_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> str | None:
        """What makes a batch's ``inputs`` unusable for this encoder (a sequence longer than it
        embeds, token ids past its vocabulary, a wrong feature width...), in words, or ``None``;
        a model calls it on a validation batch before training. Default: accept."""
        return None

    def keys_for_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> dict[str, Any]:
        """The keys of this encoder's ``Options`` that would make it take ``inputs`` where their
        shape is what :meth:`check_inputs` refuses (an image size, a frame width, a sequence
        length), at the values those inputs need, as a table of its options gives them; ``{}``
        when they fit or no key would make them. ``multimodal.classifier`` names them in its
        refusal, and the contract tests build it with them for a dataset's batches. Default: ``{}``."""
        return {}

    def block_modules(self) -> Sequence[nn.Module]:
        """The repeated blocks, in forward order, that a model built on this encoder offers as
        its own (sharding units of ``fsdp``, activation checkpointing); default: none."""
        return []

    def mlp_pairs(self) -> Sequence[tuple[nn.Linear, nn.Linear]]:
        """The position-wise MLPs whose hidden channels structured pruning may remove, as
        ``(expanding Linear, contracting Linear)`` pairs in forward order; default: none."""
        return []

    def narrowed_options(self, table: dict[str, Any], keep: float, multiple_of: int) -> tuple[dict[str, Any], list[int]]:
        """This encoder's options ``table`` changed so that it builds with each MLP of
        :meth:`mlp_pairs` about ``keep`` of its hidden width (kept widths rounded to
        ``multiple_of`` where the options allow), and the kept width of each pair in that
        order. Encoders with MLP pairs override it; the default has none to narrow."""
        return dict(table), []

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """A batch of ``batch_size`` inputs this encoder takes and its padding mask (or ``None``),
        shaped as its options say; the encoder contract test calls its forward on them. Every
        encoder should give one; the default gives none (the contract test then fails asking
        for it)."""
        return None


CONTRACT = ("return EncoderOutput(features (batch, tokens, output_dim) floating, padding_mask (batch, tokens) bool "
            "True at padding) (docs/multimodal.md section 2)")
"""The fix every output violation names."""


def encoder_label(name: str, label: str | None, path: str) -> str:
    """How errors name an encoder: ``[<path>: ]<label>``, ``label`` its registration's
    (:attr:`~deepseek.plugins.records.Component.label`: ``encoder 'vision.x' (<distribution>
    <version>, registered by <module>)``; ``None``: ``encoder 'vision.x'``); ``path`` is where its
    keys live (``model.vision``), left out when it is the encoder's own ``encoder.<name>``."""
    where = "" if path == f"encoder.{name}" else f"{path}: "
    return where + (label or f"encoder {name!r}")


def check_encoder(encoder: object, label: str) -> None:
    """A one-line :class:`~deepseek.errors.PluginError` (:func:`~deepseek.plugins.calls.broken_answer`)
    unless ``encoder`` (what a registered target returned) is an :class:`Encoder` whose
    ``output_dim`` is a positive int."""
    if not isinstance(encoder, Encoder):
        raise broken_answer(label, f"its target returned {type(encoder).__name__}, not a deepseek.models.encoder."
                                   "Encoder; register an Encoder subclass (docs/multimodal.md section 2)")
    dim = getattr(encoder, "output_dim", None)  # an instance attribute the encoder sets in __init__
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        got = "does not set output_dim" if dim is None else f"sets output_dim = {dim!r}"
        raise broken_answer(label, f"{type(encoder).__name__} {got}; set self.output_dim to the feature width "
                                   "(a positive int) in __init__ (docs/multimodal.md section 2)")


def output_problem(out: object, inputs: object, output_dim: int) -> str | None:
    """What breaks the output contract in ``out`` (an encoder's return for ``inputs``), or ``None``;
    shapes and dtypes only (no data is read)."""
    if not isinstance(out, EncoderOutput):
        return f"returned a {type(out).__name__}, not an EncoderOutput"
    f, mask = out.features, out.padding_mask
    if not isinstance(f, torch.Tensor) or not f.is_floating_point():
        what = f"a {f.dtype} tensor" if isinstance(f, torch.Tensor) else type(f).__name__
        return f"returned features that are {what}, not a floating-point tensor"
    if f.dim() != 3 or f.shape[-1] != output_dim:
        return f"returned features of shape {tuple(f.shape)}, not (batch, tokens, output_dim={output_dim})"
    if isinstance(inputs, torch.Tensor) and inputs.dim() and f.shape[0] != inputs.shape[0]:
        return f"returned features of batch {f.shape[0]} for inputs of batch {inputs.shape[0]}"
    if not isinstance(mask, torch.Tensor):
        return f"returned padding_mask {type(mask).__name__}, not a (batch, tokens) bool tensor (all False: no padding)"
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(f.shape[:2]):
        return (f"returned a padding_mask of {mask.dtype} {tuple(mask.shape)}, not bool {tuple(f.shape[:2])} "
                "(the features' batch and tokens)")
    return None


def check_output(encoder: Encoder, out: object, inputs: object, label: str) -> EncoderOutput:
    """``out`` when it keeps the output contract (:func:`output_problem`), else a one-line
    :class:`~deepseek.errors.PluginError` (:func:`~deepseek.plugins.calls.broken_answer`) naming
    ``label``, what was wrong and the fix."""
    problem = output_problem(out, inputs, encoder.output_dim)
    if problem is not None:
        raise broken_answer(label, f"forward {problem}; {CONTRACT}")
    return out  # type: ignore[return-value]


def narrowed_width(width: int, keep: float, multiple_of: int) -> int:
    """``keep`` of ``width`` rounded down to a multiple of ``multiple_of``, at least one multiple."""
    return max(multiple_of, int(width * keep) // multiple_of * multiple_of)


@dataclass(frozen=True)
class TextEncoderOptions:
    """Keys of ``text.transformer`` (the GPT's shape fields, with an encoder's defaults)."""

    vocab_size: int = 256
    """Token ids the encoder embeds (byte tokens: 256)."""
    d_model: int = 256
    """Feature width (``output_dim``)."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 4
    """Transformer blocks."""
    d_ff: int | None = None
    """MLP width (unset: ``4 * d_model``)."""
    max_seq_len: int = 512
    """Longest token sequence."""
    dropout: float = 0.0
    """Dropout in training."""
    bias: bool = True
    """Biases in linear layers and norms."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""


class TextTransformerEncoder(Encoder):
    """Byte-token encoder: token + learned position embeddings, ``n_layers`` pre-norm blocks
    with full (non-causal) attention, final LayerNorm. ``output_dim == d_model``.

    Options are validated like the GPT config (``ConfigError`` naming
    ``encoder.text.transformer.<field>``).
    """

    Options = TextEncoderOptions

    def __init__(self, options: TextEncoderOptions | None = None, **keys: Any) -> None:
        super().__init__()
        o = options if options is not None else TextEncoderOptions(**keys)
        try:
            c = GPTConfig(**dataclasses.asdict(o), tie_embeddings=False)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("model.", "encoder.text.transformer.", 1)) from None
        self.config = c
        self.output_dim = c.d_model
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.wpe = nn.Embedding(c.max_seq_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = make_blocks(c)
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias)
        self.activation_checkpointing = False
        init_weights(self, c.n_layers)

    def check_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> str | None:
        """Token ids ``(B, T)`` within ``vocab_size`` and ``T`` within ``max_seq_len``."""
        c = self.config
        if inputs.dim() != 2 or inputs.dtype.is_floating_point:
            return f"token ids must be a (batch, length) integer tensor, got {inputs.dtype} of shape {tuple(inputs.shape)}"
        if inputs.shape[1] > c.max_seq_len:
            return f"sequences of {inputs.shape[1]} tokens are longer than max_seq_len={c.max_seq_len}; raise max_seq_len"
        if inputs.numel() and (int(inputs.min()) < 0 or int(inputs.max()) >= c.vocab_size):
            return (f"token ids span {int(inputs.min())}..{int(inputs.max())} but vocab_size is {c.vocab_size}; "
                    f"set vocab_size to at least {int(inputs.max()) + 1}")
        return None

    def keys_for_inputs(self, inputs: torch.Tensor, padding_mask: torch.Tensor | None) -> dict[str, Any]:
        """``max_seq_len`` raised to a longer sequence's length and ``vocab_size`` to one past the
        largest token id, where the integer ``(B, T)`` ``inputs`` need them."""
        c, keys = self.config, {}
        if inputs.dim() != 2 or inputs.dtype.is_floating_point:
            return keys
        if inputs.shape[1] > c.max_seq_len:
            keys["max_seq_len"] = int(inputs.shape[1])
        if inputs.numel() and int(inputs.min()) >= 0 and int(inputs.max()) >= c.vocab_size:
            keys["vocab_size"] = int(inputs.max()) + 1
        return keys

    def example_inputs(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids ``(batch_size, min(12, max_seq_len))``, the last row's second half padding."""
        length = min(12, self.config.max_seq_len)
        device = self.wte.weight.device
        tokens = torch.arange(batch_size * length, device=device).view(batch_size, length) % self.config.vocab_size
        mask = torch.zeros(batch_size, length, dtype=torch.bool, device=device)
        mask[-1, length // 2 + 1:] = True
        return tokens, mask

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> EncoderOutput:
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
        if padding_mask is None:
            return EncoderOutput(x, torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device))
        mask = padding_mask.bool()
        return EncoderOutput(x.masked_fill(mask[..., None], 0.0), mask)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute block activations in backward."""
        self.activation_checkpointing = bool(enabled)

    def block_modules(self) -> Sequence[nn.Module]:
        """The Transformer blocks."""
        return list(self.blocks)

    def mlp_pairs(self) -> Sequence[tuple[nn.Linear, nn.Linear]]:
        """Each block's ``mlp.fc`` / ``mlp.proj``."""
        return [(b.mlp.fc, b.mlp.proj) for b in self.blocks]

    def narrowed_options(self, table: dict[str, Any], keep: float, multiple_of: int) -> tuple[dict[str, Any], list[int]]:
        """``d_ff`` narrowed (every block has the same width)."""
        width = narrowed_width(int(self.config.d_ff), keep, multiple_of)
        return {**table, "d_ff": width}, [width] * len(self.blocks)
