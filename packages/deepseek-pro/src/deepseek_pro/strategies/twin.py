"""Weightless copies of a model: a meta-device twin made without copying any weight, and a real
copy of it with shared (tied) parameters kept shared. Strategies that shard or split the model use
them to rebuild a plain full model (``unwrapped_model``) and for shape checks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device, made without copying any weight (a plain
    ``deepcopy`` would first duplicate every tensor in memory)."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def materialize(template: nn.Module, device: torch.device | str) -> nn.Module:
    """An uninitialised copy of a meta ``template`` on ``device`` with shared parameters (tied
    embeddings) still shared: ``Module.to_empty`` alone gives each owner its own tensor."""
    owners: dict[int, list[str]] = {}
    for name, p in template.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    model = copy.deepcopy(template).to_empty(device=device)
    for names in owners.values():
        shared = model.get_parameter(names[0])
        for name in names[1:]:
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, shared)
    return model
