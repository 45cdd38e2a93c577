"""The row order of fused, column-sharded parameters under tensor parallelism.

A fused projection stacks several equal parts along dim 0 (the GPT's ``qkv``: ``q | k | v``,
each ``n_heads * head_dim`` rows). Column-sharding it as it is would hand rank 0 all of ``q`` and
half of ``k``. So before sharding, :class:`FusedRows` reorders the rows rank-major —
``q_0 k_0 v_0 | q_1 k_1 v_1 | ...`` — and a plain ``Shard(0)`` gives rank ``r`` its own heads' q, k
and v (``TensorParallelPlan.fused_rows`` of :mod:`deepseek.models.protocol` names the parameters).
The gathered (full) state of such a model is in that order; :meth:`FusedRows.canonical` puts the
model and optimizer state back in the canonical order before a checkpoint is written or a plain
model is rebuilt, and :meth:`FusedRows.sharded` does the opposite for a checkpoint being loaded,
so checkpoints keep one layout whatever strategy wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from deepseek.errors import ConfigError


class FusedRows:
    """Which parameters of a model are fused (name -> parts) and how to reorder their rows for
    ``tp`` ranks."""

    def __init__(self, model: nn.Module, patterns: Mapping[str, int], tp: int) -> None:
        self.tp = tp
        self.parts: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        for name, p in model.named_parameters():
            parts = next((k for pattern, k in patterns.items() if fnmatchcase(name, pattern)), None)
            if parts is None:
                continue
            if not isinstance(parts, int) or parts < 1 or p.dim() == 0 or p.shape[0] % (parts * tp):
                raise ConfigError(
                    f"model: parameter {name} of shape {tuple(p.shape)} does not split into {parts} "
                    f"fused parts x {tp} tensor-parallel ranks; the model's tensor_parallel_plan is wrong"
                )
            self.parts[name] = parts
            self.rows[name] = p.shape[0]

    def _reorder(self, t: torch.Tensor, parts: int, *, to_canonical: bool) -> torch.Tensor:
        rest = t.shape[1:]
        chunk = t.shape[0] // (parts * self.tp)
        first, second = (self.tp, parts) if to_canonical else (parts, self.tp)
        return t.reshape(first, second, chunk, *rest).transpose(0, 1).reshape(t.shape).contiguous()

    def to_sharded(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (canonical rows of parameter ``name``) in rank-major order."""
        parts = self.parts.get(name)
        return t if parts is None else self._reorder(t, parts, to_canonical=False)

    def to_canonical(self, name: str, t: torch.Tensor) -> torch.Tensor:
        """``t`` (rank-major rows of parameter ``name``) in canonical order."""
        parts = self.parts.get(name)
        return t if parts is None else self._reorder(t, parts, to_canonical=True)

    def reorder_model(self, model: nn.Module) -> None:
        """Reorder the fused parameters of the plain (not yet sharded) ``model`` in place."""
        with torch.no_grad():
            for name in self.parts:
                p = model.get_parameter(name)
                p.copy_(self.to_sharded(name, p.detach()))

    def canonical(self, msd: Mapping[str, Any], osd: Mapping[str, Any] | None = None) -> tuple[dict, dict | None]:
        """Gathered model (and optimizer) state dicts in canonical row order."""
        return self._convert(msd, osd, self.to_canonical)

    def sharded(self, msd: Mapping[str, Any], osd: Mapping[str, Any] | None = None) -> tuple[dict, dict | None]:
        """Canonical full model (and optimizer) state dicts in this run's row order."""
        return self._convert(msd, osd, self.to_sharded)

    def _convert(self, msd: Mapping[str, Any], osd: Mapping[str, Any] | None, fn: Any) -> tuple[dict, dict | None]:
        model = {k: fn(k, v) if isinstance(v, torch.Tensor) else v for k, v in msd.items()}
        if osd is None:
            return model, None
        state = {}
        for name, values in osd.get("state", {}).items():
            rows = self.rows.get(name)
            state[name] = {
                key: fn(name, v) if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == rows else v
                for key, v in values.items()
            }
        return model, {**osd, "state": state}
