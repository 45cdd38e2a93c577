"""What an optimizer keeps for one parameter, and the one check of optimizer state read back.

A registered optimizer (:class:`~deepseek.training.optimizers.OptimizerBuilder`) declares the
state it keeps for a parameter with ``state_spec(shape)``: each key's :class:`StateValue` (its
shape, floating point or not, never negative or not, a step count or not). :func:`check_state_fit`
holds optimizer state read back from a checkpoint to that declaration, or, for an optimizer that
declares none, to the rule every optimizer here follows (floating-point tensors of the parameter's
shape, that shape with dimensions reduced to 1, or scalars; ``step`` a whole count). It runs before
the state is loaded into a live optimizer, whose ``load_state_dict`` casts what it reads to the
parameters' dtype (integers became floats) and whose first step would take a negative second
moment's square root: everywhere a checkpoint's optimizer state is read back whole (core's
``load_optimizer_state``, deepseek-pro's full layout, DeepSpeed, pipeline stages), and in two
passes for deepseek-pro's sharded layout (the files' headers as ``meta`` tensors before torch reads
them into tensors of the live dtype, then the values this rank read: ``local=True``).

Nothing here imports torch at module level (the optimizer contract is read when a config loads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deepseek.errors import CheckpointError
from deepseek.training.checkpoint_io import HINT

if TYPE_CHECKING:
    from deepseek.training.optimizers import OptimizerBuilder


@dataclass(frozen=True)
class StateValue:
    """What one key of a parameter's optimizer state holds (``OptimizerBuilder.state_spec``)."""

    shape: tuple[int, ...] = ()
    """Its shape: the parameter's for a moment, ``()`` for a scalar, or another the optimizer
    derives from the parameter's (Adafactor's row and column factors)."""
    floating: bool = True
    """Floating-point values (every one finite, as every tensor read back); ``False``: integers
    (quantized state)."""
    non_negative: bool = False
    """Never below 0 (a second moment, whose square root the step takes)."""
    count: bool = False
    """A count of steps: one whole number, 0 or more (a scalar tensor of any numeric dtype, or a
    plain number); ``shape`` and ``floating`` do not apply."""


Spec = Callable[[tuple[int, ...]], "Mapping[str, StateValue] | None"]


def check_state_fit(state: Mapping[str, Mapping[str, Any]], shapes: Mapping[str, tuple[int, ...]], path: Any,
                    builder: OptimizerBuilder | None = None, *, local: bool = False) -> None:
    """Optimizer state read back (parameter name -> its state; each name one of ``shapes``) against
    the parameters' full ``shapes`` and what ``builder`` (the run's ``OptimizerBuilder``, or ``None``) declares it keeps
    (``state_spec``); a :class:`CheckpointError` naming ``path``, the parameter and key, what is
    wrong and what to do, before any of it is loaded. ``meta`` tensors (a shard folder's headers)
    are held to their keys, dtypes and shapes only; ``local``: the tensors are this rank's parts of
    sharded state, checked by their values only (their keys and shapes were, from the headers)."""
    label = f"optimizer {builder.config.name!r}" if builder is not None else "the optimizer"
    spec: Spec | None = builder.state_spec if builder is not None else None
    same_rank = _keys_by_rank(state, shapes)
    for name, values in sorted(state.items()):
        shape = shapes.get(name)
        declared = spec(shape) if spec is not None and shape is not None else None
        where = f"{path}: optimizer state {name}"
        if shape is None and not local:  # a name in no group: the resume would drop it unread
            raise CheckpointError(f"{where} is for a parameter this model does not have; the checkpoint is damaged, "
                                  f"{HINT}")
        if not local:
            if declared is not None:
                _check_keys(values, declared, where, label)
            else:
                missing = sorted(same_rank.get(_rank(shape), set()) - set(values))
                if missing:
                    raise CheckpointError(f"{where} lacks {missing}, which other parameters have; the checkpoint "
                                          f"is damaged, {HINT}")
        for key, value in values.items():
            rule = declared.get(key) if declared is not None else _default_rule(key, value, shape)
            if rule is not None:
                _check_value(value, rule, f"{where}/{key}", label, shape, local=local)


def _rank(shape: tuple[int, ...] | None) -> int | None:
    return len(shape) if shape is not None else None


def _keys_by_rank(state: Mapping[str, Mapping[str, Any]], shapes: Mapping[str, tuple[int, ...]]) -> dict:
    """The keys parameters with as many dimensions hold, together (the rule without a declaration:
    Adafactor keeps a matrix's second moment as row and column factors, a vector's whole)."""
    keys: dict[int | None, set[str]] = {}
    for name, values in state.items():
        keys.setdefault(_rank(shapes.get(name)), set()).update(values)
    return keys


def _default_rule(key: str, value: Any, shape: tuple[int, ...] | None) -> StateValue | None:
    """The rule of an optimizer that declares no state: ``step`` a count, every other tensor
    floating point (a scalar, the parameter's shape or that shape with dimensions reduced to 1,
    checked in :func:`_check_value`); other plain values as they are."""
    import torch

    if key == "step":
        return StateValue(count=True)
    if not isinstance(value, torch.Tensor):
        return None
    return StateValue(shape=tuple(value.shape) if _reduced(tuple(value.shape), shape) else shape or ())


def _reduced(got: tuple[int, ...], shape: tuple[int, ...] | None) -> bool:
    """``got`` is a scalar, ``shape`` or ``shape`` with some dimensions reduced to 1 (or the
    parameter's shape is unknown)."""
    if shape is None or got == ():
        return True
    return len(got) == len(shape) and all(g in (s, 1) for g, s in zip(got, shape, strict=True))


def _check_keys(values: Mapping[str, Any], declared: Mapping[str, StateValue], where: str, label: str) -> None:
    kept = ", ".join(sorted(declared)) or "nothing"
    foreign = sorted(set(values) - set(declared))
    if foreign:
        raise CheckpointError(f"{where} holds {foreign[0]!r}, which {label} does not keep (it keeps {kept}): the "
                              f"state was written by another optimizer; resume with the [optimizer] name of the run "
                              f"that wrote it (optimizer.name), or {HINT}")
    missing = sorted(set(declared) - set(values))
    if values and missing:
        raise CheckpointError(f"{where} lacks {missing}, which {label} keeps for every parameter it stepped; the "
                              f"checkpoint is damaged, {HINT}")


def _check_value(value: Any, rule: StateValue, where: str, label: str, shape: tuple[int, ...] | None, *,
                 local: bool) -> None:
    import torch

    if rule.count:
        _check_count(value, where)
        return
    if not isinstance(value, torch.Tensor):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CheckpointError(f"{where} is {value!r} where {label} keeps a finite number; the checkpoint is "
                                  f"damaged, {HINT}")
        return
    if not local and tuple(value.shape) != rule.shape:
        of = f"its parameter {list(shape)}" if shape is not None else "its parameter"
        raise CheckpointError(f"{where} has shape {list(value.shape)} where {label} keeps {list(rule.shape)} for "
                              f"{of}; the checkpoint is damaged or from another model, {HINT}")
    if rule.floating != value.is_floating_point():
        kind = "floating-point values" if rule.floating else "integers"
        raise CheckpointError(f"{where} holds {value.dtype} values where {label} keeps {kind}; the checkpoint is "
                              f"damaged, {HINT}")
    # finite: every tensor read back was checked as its file was read (checkpoint_io.check_finite,
    # deepseek-pro's check of what each rank read), before this check
    if rule.non_negative and value.device.type != "meta" and value.is_floating_point():
        values = value.float() if value.element_size() == 1 else value  # float8: compared as float32
        negative = values < 0
        if bool(negative.any()):
            raise CheckpointError(f"{where} holds {int(negative.sum())} negative value(s) (the least "
                                  f"{float(values.min()):.4g}) where {label} keeps values >= 0; the checkpoint is "
                                  f"damaged, {HINT}")


def _check_count(value: Any, where: str) -> None:
    """A step count: one whole number, 0 or more (below 2**53, exact in a float)."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CheckpointError(f"{where} has shape {list(value.shape)}, not one count of steps; the checkpoint is "
                                  f"damaged, {HINT}")
        if value.device.type == "meta":
            return
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53 \
            or value != int(value):
        raise CheckpointError(f"{where} is {value!r}, not a whole count of steps (0 or more); the checkpoint is "
                              f"damaged, {HINT}")
