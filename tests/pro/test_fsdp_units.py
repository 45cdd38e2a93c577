"""``fsdp`` pieces that need no process group: the meta-device twin kept as a template."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import deepseek
from deepseek_pro.strategies.twin import meta_twin


class _RealTensorOps(TorchDispatchMode):
    """Records every aten op that produces a tensor off the meta device (a copy, an allocation)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and not t.is_meta for t in tree_leaves(out)):
            self.ops.append(str(func))
        return out


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return deepseek.create_model("tiny")


def _real_ops(make: Callable[[], nn.Module]) -> tuple[nn.Module, list[str]]:
    with _RealTensorOps() as rec:
        out = make()
    return out, rec.ops


def test_twin_is_on_meta_with_the_same_names_shapes_and_ties() -> None:
    model = _tiny()
    twin = meta_twin(model)
    assert type(twin) is type(model) and twin is not model
    ours = dict(model.named_parameters(remove_duplicate=False))
    theirs = dict(twin.named_parameters(remove_duplicate=False))
    assert list(theirs) == list(ours)
    for name, p in theirs.items():
        assert p.is_meta and isinstance(p, nn.Parameter), name
        assert (p.shape, p.dtype, p.requires_grad) == (ours[name].shape, ours[name].dtype, ours[name].requires_grad)
    assert [(n, b.shape) for n, b in twin.named_buffers()] == [(n, b.shape) for n, b in model.named_buffers()]
    assert all(b.is_meta for b in twin.buffers())
    assert twin.lm_head.weight is twin.wte.weight  # tied in the model: one parameter in the twin too
    assert len(list(twin.parameters())) == len(list(model.parameters()))


def test_twin_leaves_the_model_alone_and_copies_no_weight() -> None:
    model = _tiny()
    params = {n: (p, p.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    twin, ops = _real_ops(lambda: meta_twin(model))
    assert ops == []  # nothing allocated or copied off the meta device
    for name, p in model.named_parameters():
        original, ptr, value = params[name]
        assert p is original and p.device.type == "cpu" and p.data_ptr() == ptr, name
        assert torch.equal(p, value), name
    assert model.lm_head.weight is model.wte.weight
    assert all(t.is_meta for t in twin.parameters())
    # The recorder does see copies: a plain deepcopy duplicates every weight before moving it.
    _, naive = _real_ops(lambda: copy.deepcopy(model).to("meta"))
    assert len([op for op in naive if "clone" in op]) >= len(params)


def test_twin_materializes_into_the_same_model() -> None:
    """What the strategy does with it: an empty CPU copy loaded with the full state dict."""
    model = _tiny().eval()
    plain = copy.deepcopy(meta_twin(model)).to_empty(device="cpu").eval()
    plain.load_state_dict(model.state_dict())
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain(idx), model(idx), rtol=0, atol=0)


def test_materialize_keeps_tied_weights_tied() -> None:
    """``Module.to_empty`` gives each owner of a shared parameter its own tensor; ``materialize``
    (used by ``FSDPStrategy.unwrapped_model``) re-shares them."""
    from deepseek_pro.strategies.twin import materialize

    model = deepseek.create_model("tiny")
    plain = materialize(meta_twin(model), "cpu")
    assert not any(p.is_meta for p in plain.parameters())
    assert plain.lm_head.weight is plain.wte.weight
    assert plain.num_parameters() == model.num_parameters()
    plain.load_state_dict(model.state_dict())
    idx = torch.randint(0, 256, (2, 16))
    assert torch.equal(plain(idx), model(idx))


def test_materialize_restores_buffers_no_state_dict_carries() -> None:
    """A non-persistent buffer (Swin's relative-position index, a causal mask) is not in the state
    dict, so a model rebuilt from a twin and a state dict would hold garbage there: the twin keeps
    its values and ``materialize`` puts them back; persistent buffers stay weightless."""
    from deepseek_pro.strategies.twin import materialize

    class WithIndex(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.register_buffer("index", torch.arange(9).view(3, 3), persistent=False)
            self.register_buffer("stats", torch.ones(4))

    model = nn.Sequential(WithIndex(), WithIndex())
    model[1].index.mul_(2)
    twin = meta_twin(model)
    assert twin[0].index.device.type == "cpu" and twin[0].stats.is_meta and twin[0].lin.weight.is_meta
    plain = materialize(twin, "cpu")
    plain.load_state_dict(model.state_dict())
    assert torch.equal(plain[0].index, torch.arange(9).view(3, 3))
    assert torch.equal(plain[1].index, 2 * torch.arange(9).view(3, 3))
    assert torch.equal(plain[1].stats, model[1].stats)
    assert plain[0].index.data_ptr() != twin[0].index.data_ptr()
