"""``prune.ffn``: structured pruning of a GPT's MLP channels.

Each block's MLP computes ``proj(gelu(fc(x)))`` with ``d_ff`` hidden channels. A channel is a row
of ``fc`` (weight and bias) and the matching column of ``proj``; removing it removes that much
work and leaves a smaller dense GPT of the same architecture (``d_ff`` smaller in every block),
which deepseek-core builds and loads like any other: no mask stays behind.

Importance of channel ``j`` (per block; the lowest are removed, the same count in every block):

* ``magnitude``: ``||fc.weight[j]|| * ||proj.weight[:, j]||`` (how much the channel can pass);
* ``taylor``: the first-order Taylor estimate of the loss change when the channel is zeroed,
  ``|sum over its parameters of w * dL/dw|``, accumulated over the calibration batches
  (Molchanov et al. 2019).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from deepseek.errors import UsageError
from deepseek_enterprise.compress.compressor import Compressed, Compressor


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


def channel_scores(model: Any, score: str, calibration: list[Any]) -> list[Any]:
    """One importance vector (``d_ff``) per block."""
    import torch

    blocks = list(model.blocks)
    if score == "magnitude":
        with torch.no_grad():
            return [b.mlp.fc.weight.norm(dim=1) * b.mlp.proj.weight.norm(dim=0) for b in blocks]
    if not calibration:
        raise UsageError("prune.ffn: score = \"taylor\" needs calibration batches (--calibration-batches > 0)")
    from deepseek.data.batch import move_to
    from deepseek.models.protocol import split_output

    device = next(model.parameters()).device
    work = copy.deepcopy(model).train()
    totals = [torch.zeros(b.mlp.fc.out_features, device=device) for b in blocks]
    for batch in calibration:
        work.zero_grad(set_to_none=True)
        loss, _ = split_output(work(**move_to(batch, device)), model_name="prune.ffn")
        loss.backward()
        with torch.no_grad():
            for total, b in zip(totals, work.blocks, strict=True):
                fc, proj = b.mlp.fc, b.mlp.proj
                contrib = (fc.weight * fc.weight.grad).sum(dim=1) + (proj.weight * proj.weight.grad).sum(dim=0)
                if fc.bias is not None:
                    contrib = contrib + fc.bias * fc.bias.grad
                total += contrib
    return [t.abs() for t in totals]


class PruneFFN(Compressor):
    """Remove the least important MLP channels of every block of a GPT."""

    Options: ClassVar[type] = PruneFFNOptions

    def check_model(self, model: Any, config: Any) -> None:
        from deepseek.models.gpt import GPT

        if not isinstance(model, GPT):
            raise UsageError(f"--method prune.ffn: prunes GPT models; {config.model.name!r} is "
                             f"{type(model).__name__}")

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

        from deepseek.config.components import options_dict
        from deepseek.models.gpt import GPT

        d_ff = model.config.d_ff
        keep = self.kept(d_ff)
        scores = channel_scores(model, self.options.score, calibration)
        kept_idx = [torch.sort(torch.topk(s, keep).indices).values for s in scores]
        new_config = dataclasses.replace(model.config, d_ff=keep)
        pruned = GPT(new_config)  # on the CPU; its tied head stays tied when the weights are copied in
        state = {}
        for name, tensor in model.state_dict().items():
            parts = name.split(".")
            if len(parts) >= 5 and parts[0] == "blocks" and parts[2] == "mlp":
                idx = kept_idx[int(parts[1])].to(tensor.device)
                if parts[3] == "fc":  # rows: weight (d_ff, d_model), bias (d_ff)
                    tensor = tensor.index_select(0, idx)
                elif parts[3] == "proj" and parts[4] == "weight":  # columns: (d_model, d_ff)
                    tensor = tensor.index_select(1, idx)
            state[name] = tensor.detach().clone()
        pruned.load_state_dict(state)
        pruned = pruned.to(next(model.parameters()).device).eval()
        table = {"name": config.model.name, **options_dict(config.model.options), "d_ff": keep}
        record = {"d_ff": [d_ff, keep], "removed_per_block": d_ff - keep, "score": self.options.score,
                  "blocks": len(kept_idx)}
        return Compressed(pruned, table, record)
