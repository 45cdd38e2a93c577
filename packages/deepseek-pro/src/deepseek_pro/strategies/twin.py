"""Weightless copies of a model: a meta-device twin made without copying any weight, and a real
copy of it with shared (tied) parameters kept shared. Strategies that shard or split the model use
them to rebuild a plain full model (``unwrapped_model``) and for shape checks."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def _non_persistent(model: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers that no state dict carries (``register_buffer(..., persistent=False)``: index
    tables, masks), by qualified name."""
    out = {}
    for prefix, module in model.named_modules():
        for name in module._non_persistent_buffers_set:
            buf = module._buffers.get(name)
            if buf is not None:
                out[f"{prefix}.{name}" if prefix else name] = buf
    return out


def meta_twin(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the meta device, made without copying any weight (a plain
    ``deepcopy`` would first duplicate every tensor in memory). Buffers that no state dict
    carries keep their values (a CPU copy): a rebuilt model could not get them back otherwise."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    kept = {id(b) for b in _non_persistent(model).values()}
    for b in model.buffers():
        memo[id(b)] = b.detach().to("cpu", copy=True) if id(b) in kept else torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def materialize(template: nn.Module, device: torch.device | str) -> nn.Module:
    """An uninitialised copy of a meta ``template`` on ``device`` with shared parameters (tied
    embeddings) still shared: ``Module.to_empty`` alone gives each owner its own tensor. The
    buffers no state dict carries get the values :func:`meta_twin` kept."""
    owners: dict[int, list[str]] = {}
    for name, p in template.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(name)
    kept = {name: buf for name, buf in _non_persistent(template).items() if not buf.is_meta}
    model = copy.deepcopy(template).to_empty(device=device)
    for name, buf in kept.items():
        parent, _, leaf = name.rpartition(".")
        model.get_submodule(parent)._buffers[leaf] = buf.to(device, copy=True)
    for names in owners.values():
        shared = model.get_parameter(names[0])
        for name in names[1:]:
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, shared)
    return model
