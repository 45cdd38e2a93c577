"""Contract every registered optimizer meets, whoever registered it: an ``OptimizerBuilder``
subclass with defaulted ``Options`` whose ``create`` over a tiny model's parameter groups gives a
torch optimizer that moves the parameters, whose ``state_dict`` round-trips (the next step
matches), and whose ``initial_state``, where it states one, is what the first step creates.

Each test runs at two settings of the ``[optimizer]`` keys every optimizer shares
(:data:`SHARED_SETTINGS`): the defaults with ``weight_decay = 0.1``, and a second set where
momentum, weight decay and the first beta are 0, since state an optimizer keeps (or leaves out)
only at some settings must be what it declares too (docs/plugins.md section 14). An optimizer
whose ``Options`` declares keys of its own runs at a third, ``own``: the shared defaults with each
of its own keys at another value its field takes (:func:`own_options`)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from _pairing import qualified_names

from deepseek.config.components import load_checked, options_class
from deepseek.config.schema import OptimizerConfig
from deepseek.plugins.host import get_host
from deepseek.training.optimizers import GroupedOptimizerFactory, OptimizerBuilder

OPTIMIZERS = qualified_names("optimizer")

SHARED_SETTINGS: dict[str, dict[str, object]] = {
    "defaults": {"weight_decay": 0.1},
    "zeroed": {"momentum": 0.0, "weight_decay": 0.0, "betas": (0.0, 0.5)},
}
"""The shared ``[optimizer]`` keys each optimizer is checked at (by id; docs/plugins.md section 9
lists them): the defaults (momentum 0.9, betas (0.9, 0.95)) with weight decay, and with momentum,
weight decay and the first beta at 0 (plain SGD, no first moment, no decay)."""
OWN = "own"
"""The third settings id: :data:`SHARED_SETTINGS` ``defaults`` with the optimizer's own keys changed."""


def _others(default: object, hint: object) -> list[object]:
    """Values other than ``default`` to try for a field of type ``hint``, in order."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool or isinstance(default, bool):
        return [not default]
    if typing.get_origin(hint) is typing.Literal:
        return [a for a in args if a != default]
    numeric = int if hint is int or args == [int] else float if hint is float or float in args else None
    if numeric is None:
        return []  # text, tables, lists: no value to invent
    if default is None:  # an unset optional number
        return [numeric(v) for v in (1, 0.5, 2)]
    tried = [default * 2, default / 2, default + 1, default - 1] if numeric is float else [
        default * 2, default + 1, default - 1]
    return [numeric(v) for v in tried if numeric(v) != default]


def own_options(cls: type) -> tuple[object, list[str]]:
    """``cls`` (an optimizer's ``Options``) with each declared field at the first value of
    :func:`_others` its field's check takes (validated as a config's ``[optimizer]`` table is), and
    the names of the fields changed (empty: it declares none it could change)."""
    import typing

    from deepseek.config.validate import build_dataclass
    from deepseek.errors import ConfigError

    hints = typing.get_type_hints(cls)
    chosen: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for value in _others(default, hints[f.name]):
            try:
                build_dataclass(cls, {f.name: value}, path="optimizer")
            except ConfigError:
                continue
            chosen[f.name] = value
            break
    return build_dataclass(cls, chosen, path="optimizer"), sorted(chosen)


def test_core_optimizers_registered() -> None:
    assert {"deepseek-core:adamw", "deepseek-core:sgd", "deepseek-core:adafactor", "deepseek-core:lion"} <= set(OPTIMIZERS)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt.zero_grad()
    model(torch.randn(5, 4, generator=g)).square().mean().backward()
    opt.step()


settings = pytest.mark.parametrize("settings", [*SHARED_SETTINGS, OWN])


@settings
@pytest.mark.parametrize("name", OPTIMIZERS, ids=OPTIMIZERS)
def test_optimizer_contract(name: str, settings: str) -> None:
    cls = load_checked("optimizer", get_host().resolve("optimizer", name))
    assert issubclass(cls, OptimizerBuilder)
    options = options_class(cls, kind="optimizer", name=name)
    assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(options)), f"{name}: every [optimizer] key needs a default"
    assert isinstance(cls.state_bytes, int) and cls.state_bytes >= 0
    builder = _builder(name, settings)
    factory = GroupedOptimizerFactory(builder, lr=1e-2, weight_decay=builder.config.weight_decay)

    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = factory(model.parameters())
    assert isinstance(opt, torch.optim.Optimizer)
    _step(model, opt, 1)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)), f"{name}: no change"

    for p in model.parameters():  # the first step's state is what initial_state says, where it says
        stated = builder.initial_state(p.detach())
        if stated is None:
            continue
        live = opt.state[p]
        assert sorted(stated) == sorted(live), f"{name}: initial_state keys"
        for key, value in stated.items():
            assert (tuple(value.shape), value.dtype) == (tuple(live[key].shape), live[key].dtype), f"{name}: {key}"

    # state_dict round trip: a fresh optimizer loaded with it takes the same next step
    twin = copy.deepcopy(model)
    twin_opt = factory(twin.parameters())
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    _step(model, opt, 2)
    _step(twin, twin_opt, 2)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b), f"{name}: state_dict does not round-trip"


def _builder(name: str, settings: str) -> OptimizerBuilder:
    """``name``'s builder with its default options at the shared keys ``SHARED_SETTINGS[settings]``
    (``own``: the defaults' shared keys, its own options changed, :func:`own_options`); an
    optimizer whose ``check_config`` refuses them is skipped with its refusal as the reason, one
    with no own options to change is skipped at ``own``."""
    from deepseek.errors import ConfigError

    cls = load_checked("optimizer", get_host().resolve("optimizer", name))
    options = options_class(cls, kind="optimizer", name=name)()
    if settings == OWN:
        options, changed = own_options(type(options))
        if not changed:
            pytest.skip(f"{name} declares no option of its own that the contract can set")
    config = OptimizerConfig(name=name, **SHARED_SETTINGS["defaults" if settings == OWN else settings])  # type: ignore[arg-type]
    try:
        cls.check_config(options, config)
    except ConfigError as exc:
        pytest.skip(f"{name} refuses the {settings} settings: {exc}")
    return cls(options, config)


def _grads(shapes: list[tuple[int, ...]], seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for shape in shapes]


@settings
@pytest.mark.parametrize("name", OPTIMIZERS, ids=OPTIMIZERS)
def test_an_elementwise_optimizer_steps_a_flat_concatenation_alike(name: str, settings: str) -> None:
    """``elementwise = True`` lets DeepSpeed ZeRO run the optimizer on flat partitions of
    concatenated parameters: stepping a matrix and a vector must equal stepping their
    concatenation as one flat parameter, step for step."""
    builder = _builder(name, settings)
    if not builder.elementwise:
        pytest.skip(f"{name} does not declare elementwise")
    torch.manual_seed(0)
    shapes = [(6, 5), (5,)]
    apart = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in apart]))
    decay = builder.config.weight_decay
    opt_apart = builder.create([{"params": apart, "weight_decay": decay}], 1e-2)
    opt_flat = builder.create([{"params": [flat], "weight_decay": decay}], 1e-2)
    for seed in range(3):
        grads = _grads(shapes, seed)
        for p, g in zip(apart, grads, strict=True):
            p.grad = g.clone()
        flat.grad = torch.cat([g.reshape(-1) for g in grads])
        opt_apart.step()
        opt_flat.step()
    together = torch.cat([p.detach().reshape(-1) for p in apart])
    assert torch.allclose(together, flat.detach(), rtol=1e-5, atol=1e-6), \
        f"{name} declares elementwise but its update depends on how parameters are split"


@settings
@pytest.mark.parametrize("name", OPTIMIZERS, ids=OPTIMIZERS)
def test_the_declared_state_bytes_cover_what_the_optimizer_keeps(name: str, settings: str) -> None:
    """``state_bytes`` (bytes per fp32 parameter element) feeds memory estimates (deepseek advise,
    the tuner's fit check): the state a step keeps may be less, never more (scalars aside)."""
    builder = _builder(name, settings)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.randn(64))]
    opt = builder.create([{"params": params[:1], "weight_decay": builder.config.weight_decay},
                          {"params": params[1:], "weight_decay": 0.0}],
                         1e-2)
    for seed in range(2):
        for p, g in zip(params, _grads([(64, 64), (64,)], seed), strict=True):
            p.grad = g
        opt.step()
    kept = sum(v.numel() * v.element_size() for state in opt.state.values() for v in state.values()
               if torch.is_tensor(v) and v.numel() > 1)
    elements = sum(p.numel() for p in params)
    assert kept <= builder.state_bytes * elements, \
        f"{name} declares state_bytes = {builder.state_bytes} but keeps {kept / elements:.2f} B per element"


@settings
@pytest.mark.parametrize("master_weights", [False, True], ids=["fp32", "master-weights"])
@pytest.mark.parametrize("name", OPTIMIZERS, ids=OPTIMIZERS)
def test_the_state_a_checkpoint_keeps_is_what_the_optimizer_declares(name: str, master_weights: bool,
                                                                     settings: str) -> None:
    """What a checkpoint stores of the optimizer (its ``state_dict`` by parameter name) after two
    steps passes the check that state read back from disk gets (``state_spec``, or the default
    rule where none is declared): a declaration that disagrees with the optimizer would refuse
    every resume of it."""
    from deepseek.training.checkpoint import check_state_fit, optimizer_param_names

    builder = _builder(name, settings)
    if master_weights and not builder.supports_master_weights:
        pytest.skip(f"{name} does not support master weights")
    model = _model()
    opt = GroupedOptimizerFactory(builder, lr=1e-2, weight_decay=builder.config.weight_decay,
                                  master_weights=master_weights)(
        model.named_parameters())
    for seed in range(2):  # with master weights the parameters are bf16 now
        g = torch.Generator().manual_seed(seed)
        opt.zero_grad()
        model(torch.randn(5, 4, generator=g).to(next(model.parameters()).dtype)).float().square().mean().backward()
        opt.step()
    names = optimizer_param_names(opt, model)
    state = {names[i]: values for i, values in opt.state_dict()["state"].items()}
    # keeping nothing is right for an optimizer that declares it keeps nothing (docs/plugins.md
    # section 14's SignSGD: state_bytes = 0, state_spec {}), and at settings that switch its state
    # off (sgd without momentum); one declaring state must keep it at the defaults
    assert state or settings != "defaults" or builder.state_bytes == 0 or builder.state_spec((3, 4)) == {}, \
        f"{name}: keeps no state after two steps, though it declares state_bytes = {builder.state_bytes}"
    check_state_fit(state, {n: tuple(p.shape) for n, p in model.named_parameters()}, "here", builder)
    # its parameter groups, as a checkpoint saves them, are of the types it declares (hyper_parameters):
    # a declaration that disagrees would refuse every checkpoint of it in checkpoint info, export and resume
    from deepseek.training.checkpoint_io import check_saved_groups, from_jsonable, jsonable
    from deepseek.training.hyper_parameters import hyper_parameters_problem

    assert hyper_parameters_problem(builder.hyper_parameters) is None, name
    check_saved_groups([{**{k: from_jsonable(jsonable(v)) for k, v in g.items() if k != "params"},
                         "params": [names[i] for i in g["params"]]} for g in opt.state_dict()["param_groups"]],
                       "here", builder.hyper_parameters)
    if builder.state_spec((3, 4)) is not None:  # what it declares is exactly what it keeps
        assert all(sorted(values) == sorted(builder.state_spec(tuple(dict(model.named_parameters())[n].shape)))
                   for n, values in state.items()), name
