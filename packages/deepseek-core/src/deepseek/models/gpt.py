"""Decoder-only GPT: pre-norm LayerNorm blocks, learned positions, tied embeddings.

``GPT(config)(input_ids)`` returns logits ``(B, T, V)``; with ``targets`` (a training batch
``{"input_ids": x, "targets": y}`` passed as ``model(**batch)``) it returns the mean cross-entropy
loss. Without a KV cache the forward pass has no data-dependent Python control flow, so the model
traces with ``torch.fx``/``torch.export`` and compiles with ``torch.compile`` without graph breaks
(activation checkpointing included). ``torch.fx.symbolic_trace`` needs
``concrete_args={"targets": None}`` to trace the logits path (an unbound ``targets`` placeholder
would take the loss branch); ``torch.export.export(model, (input_ids,))`` needs nothing.

The GPT offers every optional capability of :mod:`deepseek.models.protocol`: per-block structure,
activation checkpointing, the residual dtype, pipeline stages and a tensor-parallel plan
(Megatron-style: attention heads and the MLP's hidden units split over the ranks; embeddings,
positions, norms and the tied head replicated).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from deepseek.config.validate import head_counts
from deepseek.errors import ConfigError, UsageError
from deepseek.models.layers import (
    KVCache,
    KVCursor,
    init_weights,
    make_blocks,
    residual_cast,
    run_blocks,
)
from deepseek.models.protocol import Batch, TensorParallelPlan, TrainableModel

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from deepseek.models.stages import GPTStage
    from deepseek.models.static_decoding import StaticDecoders


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT. ``d_ff=None`` means ``4 * d_model`` and ``head_dim=None`` means
    ``d_model // n_heads`` (both resolved on construction).

    Invalid values raise :class:`~deepseek.errors.ConfigError` naming ``model.<field>``.
    """

    vocab_size: int = 256
    """Token ids the model embeds (at least the data's vocabulary: 256 for byte tokens)."""
    d_model: int = 768
    """Width of the residual stream."""
    n_heads: int = 12
    """Attention heads (``d_model`` must be divisible by it)."""
    n_layers: int = 12
    """Decoder blocks (at most 4,096)."""
    d_ff: int | None = None
    """Hidden width of each block's MLP (unset: ``4 * d_model``)."""
    head_dim: int | None = None
    """Width of each attention head (unset: ``d_model // n_heads``). Attention works at
    ``n_heads * head_dim``, which a model with pruned heads has below ``d_model``."""
    max_seq_len: int = 1024
    """Positions of the learned position table: the longest sequence the model takes."""
    dropout: float = 0.0
    """Dropout after embeddings, attention and MLP (training only)."""
    bias: bool = True
    """Biases in linear layers and LayerNorms."""
    tie_embeddings: bool = True
    """The output head shares the token embedding's weight."""
    norm_eps: float = 1e-5
    """LayerNorm epsilon."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "max_seq_len"):
            _require(name, getattr(self, name), lambda v: isinstance(v, int) and v > 0, "must be a positive integer")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        _require("d_ff", self.d_ff, lambda v: isinstance(v, int) and v > 0, "must be a positive integer")
        _require("dropout", self.dropout, lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "must be in [0, 1)")
        _require("norm_eps", self.norm_eps, lambda v: isinstance(v, (int, float)) and v > 0, "must be > 0")
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ConfigError(
                    f"model.n_heads: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                    f"pick n_heads among {head_counts(self.d_model)}"
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        _require("head_dim", self.head_dim, lambda v: isinstance(v, int) and v > 0, "must be a positive integer")
        _require("n_layers", self.n_layers, lambda v: v <= MAX_LAYERS, f"must be at most {MAX_LAYERS:,}")
        if self.parameter_count() > MAX_PARAMETERS:
            raise ConfigError(
                f"model: vocab_size={self.vocab_size}, d_model={self.d_model}, n_layers={self.n_layers}, "
                f"d_ff={self.d_ff}, max_seq_len={self.max_seq_len} make {self.parameter_count():.3g} parameters, "
                f"more than the {MAX_PARAMETERS:.0e} a GPT here may have; check these sizes for a typo"
            )

    def parameter_count(self) -> int:
        """Parameters of a GPT of this shape (weights and biases; the head counted once when tied)."""
        from deepseek.advise.shapes import gpt_param_count

        return gpt_param_count(vocab_size=self.vocab_size, d_model=self.d_model, n_layers=self.n_layers,
                               d_ff=int(self.d_ff or 0), max_seq_len=self.max_seq_len, bias=self.bias,
                               tie_embeddings=self.tie_embeddings, attn_width=self.n_heads * int(self.head_dim or 0))

    def to_dict(self) -> dict[str, object]:
        """Plain dict (``d_ff`` and ``head_dim`` resolved), suitable for TOML/JSON and ``GPTConfig(**d)``."""
        return dataclasses.asdict(self)


MAX_LAYERS = 4096
"""Decoder blocks a GPT may have: deeper is a typo, not a model (building it would not end)."""
MAX_PARAMETERS = 10**12
"""Parameters a GPT may have (4 TB of fp32 weights): a larger shape is refused before it is built."""


def _require(name: str, value: object, ok: object, what: str) -> None:
    if not ok(value):  # type: ignore[operator]
        raise ConfigError(f"model.{name}: {what}, got {value!r}")


class GPT(TrainableModel):
    """GPT-2-style decoder. Parameter names: ``wte``, ``wpe``, ``blocks.<i>.*``, ``ln_f``,
    ``lm_head`` (``lm_head.weight`` *is* ``wte.weight`` when ``tie_embeddings``).

    Registered as the model ``gpt`` (its ``[model]`` keys are :class:`GPTConfig`'s fields);
    the presets ``tiny``, ``small`` and ``1.3b`` are GPTs with other defaults."""

    Options = GPTConfig
    static_decoding = True

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.wpe = nn.Embedding(c.max_seq_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = make_blocks(c)
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.activation_checkpointing = False
        self.fp32_residual = True
        init_weights(self, c.n_layers)
        if c.tie_embeddings:
            self.lm_head.weight = self.wte.weight

    # ------------------------------------------------------------------ forward

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, T, V)`` for token ids ``input_ids`` ``(B, T)``; with ``targets`` ``(B, T)``
        the mean cross-entropy (a 0-dim tensor; targets equal to -100 are ignored)."""
        self._check_input(input_ids)
        x = residual_cast(self.embed(input_ids), self.fp32_residual)
        x = run_blocks(self.blocks, x, checkpointing=self.activation_checkpointing)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        return cross_entropy(logits, targets)

    def metric_names(self) -> tuple[str, ...]:
        """No metrics: ``forward`` returns the loss alone."""
        return ()

    def loss_items(self, batch: Batch) -> int:
        """The targets the loss averages over: those not ``-100`` (every strategy weighs padded rows by tokens)."""
        return int((batch["targets"] != -100).sum())

    def embed(self, idx: torch.Tensor, start: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Token + position embeddings of ``idx`` placed at positions ``start ..`` (or at the
        device tensor ``positions``, one per token)."""
        pos = torch.arange(start, start + idx.size(1), device=idx.device) if positions is None else positions
        return self.drop(self.wte(idx) + self.wpe(pos))

    def _check_input(self, idx: torch.Tensor) -> None:
        # Skipped while tracing (sizes are proxies or symbols there), so tracing stays clean.
        t = idx.size(-1)
        if isinstance(t, int) and (idx.dim() != 2 or t > self.config.max_seq_len):
            raise UsageError(
                f"model input: expected token ids of shape (batch, seq) with seq <= max_seq_len="
                f"{self.config.max_seq_len}, got {tuple(idx.shape)}; shorten the sequence or "
                f"raise model.max_seq_len"
            )

    # ------------------------------------------------------------------ accounting

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Number of distinct parameters (a tied head counts once).

        ``non_embedding=True`` leaves out the embedding *lookups*, which do no arithmetic: the
        positional table, and the token table when it is not tied to ``lm_head`` (when tied it is
        the head's matmul weight and stays in). This is the ``N`` of :meth:`flops_per_token`.
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token by the PaLM formula (Chowdhery et al. 2022, appendix B):
        ``6 * N + 12 * L * d * T``, where ``N = num_parameters(non_embedding=True)`` (every
        parameter that takes part in a matmul: 2 FLOPs forward + 4 backward per token), and the
        second term counts the attention scores and weighted sum (``QK^T`` and ``AV``) over
        ``T = seq_len`` positions, again x3 for forward + backward; ``d`` is the attention width
        ``n_heads * head_dim`` (``d_model`` unless heads were pruned). MFU = tokens/s x this / peak.
        """
        c = self.config
        return 6 * self.num_parameters(non_embedding=True) + 12 * c.n_layers * c.n_heads * c.head_dim * seq_len

    def check_data(self, batch: Batch, dataset: Any) -> None:
        """Token ids must fit the position table, and the data's vocabulary the model's."""
        ids = batch.get("input_ids")
        if not isinstance(ids, torch.Tensor):
            raise UsageError(f"model input: the GPT takes batches with 'input_ids' (token ids); got keys {sorted(batch)}")
        if ids.dim() != 2:
            raise UsageError(f"model input: expected token ids of shape (batch, seq), got {tuple(ids.shape)}")
        if ids.size(1) > self.config.max_seq_len:
            raise UsageError(
                f"data.seq_len: sequences of {ids.size(1)} tokens are longer than the model's "
                f"max_seq_len={self.config.max_seq_len}; lower data.seq_len to {self.config.max_seq_len} or less (a "
                f"model built with model.max_seq_len = {ids.size(1)} or more takes them: a new run can set it)"
            )
        vocab = dataset.vocab_size if dataset.vocab_size is not None else int(ids.max()) + 1 if ids.numel() else 0
        if vocab > self.config.vocab_size:
            raise UsageError(
                f"model.vocab_size: the data's tokens take {vocab} values but the model's vocabulary "
                f"has {self.config.vocab_size}; set model.vocab_size to at least {vocab}"
            )

    # ------------------------------------------------------------------ training options

    def block_modules(self) -> Sequence[nn.Module]:
        """The decoder blocks (compile, FSDP and pipeline units)."""
        return list(self.blocks)

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute each block's activations in backward (``torch.utils.checkpoint``,
        ``use_reentrant=False``), trading ~1/3 more compute for much less activation memory."""
        self.activation_checkpointing = bool(enabled)

    def set_fp32_residual(self, enabled: bool) -> None:
        """Keep the residual stream in fp32 under autocast (default), or with ``False`` in the
        autocast dtype: less memory traffic and activation memory, slightly different numerics
        (LayerNorm and the loss still compute in fp32). No effect without autocast."""
        self.fp32_residual = bool(enabled)

    def split_stages(self, n: int) -> list[GPTStage]:
        """Split into ``n`` pipeline stages; see :func:`deepseek.models.stages.split_stages`."""
        from deepseek.models.stages import split_stages

        return split_stages(self, n)

    def pipeline_batch(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """Stage 0 takes the token ids; the loss needs the targets."""
        return (batch["input_ids"],), batch["targets"]

    def pipeline_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss from the last stage's logits."""
        return cross_entropy(output, target)

    def tied_parameters(self, stages: Sequence[nn.Module]) -> list[tuple[nn.Parameter, nn.Parameter]]:
        """``wte.weight`` on the first stage and its copy ``lm_head.weight`` on the last one."""
        from deepseek.models.stages import tied_parameters

        pair = tied_parameters(list(stages))
        return [pair] if pair is not None else []

    def tensor_parallel_plan(self, tp_size: int, *, sequence_parallel: bool) -> TensorParallelPlan:
        """Megatron-LM's split of each block: the fused ``qkv`` and the MLP's ``fc`` column-wise
        (each rank computes its own heads and hidden units; ``qkv``'s q, k and v parts are split
        separately, see :attr:`TensorParallelPlan.fused_rows`), ``attn.proj`` and ``mlp.proj``
        row-wise (one all-reduce each, or a reduce-scatter with ``sequence_parallel``). The token
        and position embeddings, ``ln_f`` and the tied ``lm_head`` stay whole on every rank. With
        ``sequence_parallel`` the block norms and the residual stream between the sharded layers
        hold ``seq / tp_size`` positions per rank (local tensors; the norms' weights are
        replicated DTensors)."""
        from deepseek.models.gpt_parallel import tensor_parallel_plan

        return tensor_parallel_plan(self.config, tp_size, sequence_parallel=sequence_parallel)

    # ------------------------------------------------------------------ decoding

    def forward_cached(self, idx: torch.Tensor, cache: KVCache | KVCursor) -> torch.Tensor:
        """Logits ``(B, T, V)`` for ``idx`` following the cached positions; the new keys and
        values are appended to ``cache`` (a :class:`KVCache`, or a :class:`KVCursor` whose
        position lives on the device: the static-cache step that CUDA graphs replay)."""
        x = self.embed(idx, positions=cache.positions(idx.size(1), idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, cache=cache, layer=i)
        cache.advance(idx.size(1))
        return self.lm_head(self.ln_f(x))

    def decode_window(self) -> int:
        """The context length, ``max_seq_len``."""
        return self.config.max_seq_len

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` (default max_seq_len),
        for the heads this process computes: all of them, or its share under tensor parallelism
        (the cache is then sharded by heads like the attention)."""
        c = self.config
        p = self.wte.weight
        return KVCache(c.n_layers, batch, self.local_heads(), max_len or c.max_seq_len, c.head_dim,
                       device=p.device, dtype=p.dtype)

    def local_heads(self) -> int:
        """Attention heads this process computes: ``n_heads``, or ``n_heads / tp`` when the model
        was split by its :meth:`tensor_parallel_plan` (read from the local width of ``qkv``)."""
        weight = self.blocks[0].attn.qkv.weight
        local = weight.to_local() if hasattr(weight, "to_local") else weight  # a DTensor shard
        return local.shape[0] // (3 * self.config.head_dim)  # type: ignore[operator]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[torch.Tensor], None] | None = None,
        static: StaticDecoders | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Extend ``idx`` ``(B, T)`` by ``max_new_tokens`` sampled tokens; returns ``(B, T + new)``.

        Uses a KV cache: one prefill of the prompt, then one token per step. ``temperature=0``
        is greedy; ``top_k`` and ``top_p`` (nucleus) narrow the draw
        (:func:`~deepseek.models.decoding.sample_next`); ``repetition_penalty`` (Hugging Face's, 1.0
        off) first makes the prompt's and the sampled tokens less likely. When the window
        ``max_seq_len`` fills up, the cache is rebuilt from the last half window (positions restart
        at 0), so each rebuild buys ``max_seq_len / 2`` cheap steps. ``on_token`` is called with
        each new column of tokens ``(B, 1)`` as it is sampled (time to first token, streaming). With
        ``static`` (a :class:`~deepseek.models.static_decoding.StaticDecoders`), the steps run on
        its static-cache decoder for this batch size (on CUDA one graph replay per token); see
        :func:`~deepseek.models.static_decoding.static_refusal` for the models that cannot.
        """
        from deepseek.models.decoding import generate_cached

        return generate_cached(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator,
                               on_token=on_token, static=static, top_p=top_p, repetition_penalty=repetition_penalty)

    def generation_vocab_size(self) -> int:
        """The token ids of the logits, ``vocab_size``."""
        return self.config.vocab_size

    def token_input_limits(self) -> tuple[int, int]:
        """``vocab_size`` ids, ``max_seq_len`` positions."""
        return self.config.vocab_size, self.config.max_seq_len


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean token cross-entropy of logits ``(B, T, V)`` against ``targets`` ``(B, T)``, in fp32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
