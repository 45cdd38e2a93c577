"""``prune.ffn`` and ``prune.heads``: structured pruning of a GPT's MLP channels and attention heads.

Each block's MLP computes ``proj(gelu(fc(x)))`` with ``d_ff`` hidden channels. A channel is a row
of ``fc`` (weight and bias) and the matching column of ``proj``; removing it removes that much
work and leaves a smaller dense GPT of the same architecture (``d_ff`` smaller in every block),
which deepseek-core builds and loads like any other: no mask stays behind.

Importance of channel ``j`` (per block; the lowest are removed, the same count in every block):

* ``magnitude``: ``||fc.weight[j]|| * ||proj.weight[:, j]||`` (how much the channel can pass);
* ``taylor``: the first-order Taylor estimate of the loss change when the channel is zeroed,
  ``|sum over its parameters of w * dL/dw|``, accumulated over the calibration batches
  (Molchanov et al. 2019).

A head ``h`` of a block's attention is ``head_dim`` rows of each of ``qkv``'s query, key and value
thirds (weight and bias) and the matching ``head_dim`` columns of ``proj``; ``prune.heads`` removes
the same number of heads from every block, leaving ``n_heads`` smaller and ``head_dim`` as it was
(the model's attention width ``n_heads * head_dim`` drops below ``d_model``, which
:class:`~deepseek.models.gpt.GPTConfig` states with its ``head_dim`` key). Its scores are those
above, summed over a head's rows and columns.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from deepseek.errors import UsageError
from deepseek_enterprise.compress.compressor import (
    Compressed,
    Compressor,
    figures_record,
    refuse_quantized,
)


def _ratio(value: float) -> str | None:
    return None if 0 < value < 1 else "must be between 0 and 1 (the share of channels removed)"


def _positive(value: int) -> str | None:
    return None if value > 0 else "must be a positive whole number"


@dataclass(frozen=True)
class PruneFFNOptions:
    """Options of ``prune.ffn``."""

    ratio: float = field(default=0.5, metadata={"check": _ratio})
    """Share of each block's MLP channels removed."""
    score: Literal["magnitude", "taylor"] = "magnitude"
    """Channel importance: weight magnitude, or first-order Taylor on calibration batches."""
    multiple_of: int = field(default=8, metadata={"check": _positive})
    """The kept width is rounded to a multiple of this (matmul-friendly shapes)."""


def head_rows(n_heads: int, head_dim: int, head: int) -> list[int]:
    """The rows of ``qkv`` (query, key and value thirds) that belong to ``head``."""
    inner = n_heads * head_dim
    return [part * inner + head * head_dim + i for part in range(3) for i in range(head_dim)]


def head_scores(model: Any, score: str, calibration: list[Any]) -> list[Any]:
    """One importance vector (``n_heads``) per block: a head's channel scores summed over its
    ``qkv`` rows and ``proj`` columns (magnitude: the product of their norms)."""
    import torch

    c = model.config
    rows = torch.tensor([head_rows(c.n_heads, c.head_dim, h) for h in range(c.n_heads)])  # (H, 3 hd)
    cols = torch.arange(c.n_heads * c.head_dim).view(c.n_heads, c.head_dim)

    def per_head(qkv_w: Any, qkv_b: Any, proj_w: Any, taylor: bool) -> Any:
        if not taylor:
            return qkv_w[rows.to(qkv_w.device)].flatten(1).norm(dim=1) * proj_w[:, cols.to(proj_w.device)].permute(1, 0, 2).flatten(1).norm(dim=1)
        out = qkv_w[rows.to(qkv_w.device)].sum(dim=(1, 2)) + proj_w[:, cols.to(proj_w.device)].sum(dim=(0, 2))
        return out if qkv_b is None else out + qkv_b[rows.to(qkv_b.device)].sum(dim=1)

    if score == "magnitude":
        with torch.no_grad():
            return [per_head(b.attn.qkv.weight, None, b.attn.proj.weight, False) for b in model.blocks]
    grads = _taylor_grads(model, calibration, "prune.heads", lambda b: (b.attn.qkv, b.attn.proj))
    return [per_head(qw, qb, pw, True).abs() for qw, qb, pw in grads]


def _taylor_grads(model: Any, calibration: list[Any], method: str, layers: Any) -> list[tuple[Any, Any, Any]]:
    """Per block, ``(w * dL/dw of the first layer, of its bias or None, of the second layer)``
    accumulated over the calibration batches (on a copy of the model in train mode), called in the
    model's block (:meth:`PruneFFN.model_calls`)."""
    import torch

    if not calibration:
        raise UsageError(f"{method}: score = \"taylor\" needs calibration batches (--calibration-batches > 0)")
    from deepseek.data.batch import move_to
    from deepseek.models.checks import split_output

    device = next(model.parameters()).device
    work = copy.deepcopy(model).train()
    totals: list[list[Any]] = []
    for n, batch in enumerate(calibration):
        work.zero_grad(set_to_none=True)
        loss, _ = split_output(work(**move_to(batch, device)))
        loss.backward()
        with torch.no_grad():
            for i, b in enumerate(work.blocks):
                first, second = layers(b)
                parts = [first.weight * first.weight.grad,
                         None if first.bias is None else first.bias * first.bias.grad,
                         second.weight * second.weight.grad]
                if n == 0:
                    totals.append(parts)
                else:
                    totals[i] = [None if t is None else t + p for t, p in zip(totals[i], parts, strict=True)]
    return [tuple(t) for t in totals]


def channel_scores(model: Any, score: str, calibration: list[Any]) -> list[Any]:
    """One importance vector (``d_ff``) per block."""
    import torch

    blocks = list(model.blocks)
    if score == "magnitude":
        with torch.no_grad():
            return [b.mlp.fc.weight.norm(dim=1) * b.mlp.proj.weight.norm(dim=0) for b in blocks]
    grads = _taylor_grads(model, calibration, "prune.ffn", lambda b: (b.mlp.fc, b.mlp.proj))
    return [(fw.sum(dim=1) + pw.sum(dim=0) + (0 if fb is None else fb)).abs() for fw, fb, pw in grads]


class PruneFFN(Compressor):
    """Remove the least important MLP channels of every block of a GPT."""

    Options: ClassVar[type] = PruneFFNOptions
    method: ClassVar[str] = "prune.ffn"
    """The method's name in its messages (``prune.heads`` inherits :meth:`check_model`)."""

    def check_model(self, model: Any, config: Any) -> None:
        from deepseek.models.gpt import GPT

        if not isinstance(model, GPT):
            from deepseek_enterprise.compress.prune_mlp import mlp_prunable

            works = "quantize.int8 (or another quantize.* method)"
            if mlp_prunable(model, config, self.host):  # the tri-modal classifier: its encoders' MLPs
                works = f"prune.mlp (its encoders' MLP channels) or {works}"
            raise UsageError(f"{self.method}: prunes GPT models; {config.model.name!r} is "
                             f"{type(model).__name__}: use {works}")
        refuse_quantized(model, self.method)

    def model_calls(self, model: Any, config: Any) -> Any:
        """The model's ``forward`` block around its scores (Taylor's calibration forwards): a
        plugin model's bug or broken output there is its one line naming it (``served_calls``)."""
        from deepseek.training.inference import served_calls

        return served_calls(model, config, self.host)("forward")

    def kept(self, d_ff: int) -> int:
        """Channels kept per block."""
        m = self.options.multiple_of
        keep = round(d_ff * (1 - self.options.ratio) / m) * m
        if not 0 < keep < d_ff:
            raise UsageError(f"prune.ffn: ratio={self.options.ratio} of d_ff={d_ff} keeps {keep} channels "
                             f"(multiple of {m}); choose a ratio that keeps between 1 and {d_ff - 1}")
        return keep

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        import torch

        d_ff = model.config.d_ff
        keep = self.kept(d_ff)
        with self.model_calls(model, config):
            scores = channel_scores(model, self.options.score, calibration)
        kept_idx = [torch.sort(torch.topk(s, keep).indices).values for s in scores]

        def select(parts: list[str], tensor: Any) -> Any:
            if len(parts) >= 5 and parts[0] == "blocks" and parts[2] == "mlp":
                idx = kept_idx[int(parts[1])].to(tensor.device)
                if parts[3] == "fc":  # rows: weight (d_ff, d_model), bias (d_ff)
                    return tensor.index_select(0, idx)
                if parts[3] == "proj" and parts[4] == "weight":  # columns: (d_model, d_ff)
                    return tensor.index_select(1, idx)
            return tensor

        pruned, table = rebuild(model, config, {"d_ff": keep}, select)
        record = {"d_ff": [d_ff, keep], "removed_per_block": d_ff - keep, "score": self.options.score,
                  "blocks": len(kept_idx), **figures_record(model, pruned)}
        return Compressed(pruned, table, record)


def rebuild(model: Any, config: Any, changes: dict[str, Any], select: Any) -> tuple[Any, dict[str, Any]]:
    """A GPT of ``model``'s shape with ``changes``, holding ``select(name parts, tensor)`` of each
    of its tensors, on ``model``'s device in eval mode; and its ``[model]`` table."""
    from deepseek.config.components import options_dict
    from deepseek.models.gpt import GPT

    pruned = GPT(dataclasses.replace(model.config, **changes))  # on the CPU; a tied head stays tied
    state = {name: select(name.split("."), tensor).detach().clone() for name, tensor in model.state_dict().items()}
    pruned.load_state_dict(state)
    pruned = pruned.to(next(model.parameters()).device).eval()
    return pruned, {"name": config.model.name, **options_dict(config.model.options), **changes}


@dataclass(frozen=True)
class PruneHeadsOptions:
    """Options of ``prune.heads``."""

    ratio: float = field(default=0.25, metadata={"check": _ratio})
    """Share of each block's attention heads removed."""
    score: Literal["magnitude", "taylor"] = "magnitude"
    """Head importance: weight magnitude, or first-order Taylor on calibration batches."""


class PruneHeads(PruneFFN):
    """Remove the least important attention heads of every block of a GPT."""

    Options: ClassVar[type] = PruneHeadsOptions
    method: ClassVar[str] = "prune.heads"

    def kept(self, n_heads: int) -> int:
        """Heads kept per block."""
        keep = round(n_heads * (1 - self.options.ratio))
        if not 0 < keep < n_heads:
            raise UsageError(f"prune.heads: ratio={self.options.ratio} of n_heads={n_heads} keeps {keep} heads; "
                             f"choose a ratio that keeps between 1 and {n_heads - 1}")
        return keep

    def compress(self, model: Any, config: Any, calibration: list[Any]) -> Compressed:
        import torch

        c = model.config
        keep = self.kept(c.n_heads)
        with self.model_calls(model, config):
            scores = head_scores(model, self.options.score, calibration)
        heads = [torch.sort(torch.topk(s, keep).indices).values.tolist() for s in scores]
        # qkv rows of the kept heads in the new layout (query, key, value thirds; heads in order)
        order = [torch.tensor([part * c.n_heads * c.head_dim + h * c.head_dim + i for part in range(3)
                               for h in hs for i in range(c.head_dim)]) for hs in heads]
        cols = [torch.tensor([h * c.head_dim + i for h in hs for i in range(c.head_dim)]) for hs in heads]

        def select(parts: list[str], tensor: Any) -> Any:
            if len(parts) >= 5 and parts[0] == "blocks" and parts[2] == "attn":
                i = int(parts[1])
                if parts[3] == "qkv":  # rows: weight (3 H hd, d_model), bias (3 H hd)
                    return tensor.index_select(0, order[i].to(tensor.device))
                if parts[3] == "proj" and parts[4] == "weight":  # columns: (d_model, H hd)
                    return tensor.index_select(1, cols[i].to(tensor.device))
            return tensor

        pruned, table = rebuild(model, config, {"n_heads": keep, "head_dim": c.head_dim}, select)
        record = {"n_heads": [c.n_heads, keep], "head_dim": c.head_dim, "kept_heads": heads,
                  "score": self.options.score, **figures_record(model, pruned)}
        return Compressed(pruned, table, record)
