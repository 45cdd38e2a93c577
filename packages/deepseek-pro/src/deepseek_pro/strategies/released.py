"""After teardown: the calls a distributed strategy refuses once its engine is released.

:meth:`DistributedStrategy.teardown <deepseek_pro.strategies.base.DistributedStrategy.teardown>` of a strategy that
made its process group drops its engine (``release_engine``: the wrapped, sharded or split model, the optimizer, the
DeepSpeed engine, the pipeline stage) and destroys the group. Every public call that needs either
(:data:`ENGINE_CALLS`: the step and its parts, evaluation, the whole model, checkpoints, the collectives) then raises
one :class:`~deepseek.errors.UsageError` naming the call (:func:`released_error`), from ONE check made before the
strategy's own code runs: :func:`guard_engine_calls` wraps each of these members where a class defines it (the base
class for what it inherits from core's ``Strategy``, its ``__init_subclass__`` for every subclass, a plugin's too), so
an override in a new strategy is covered without calling anything itself. Before, they failed with a bare assert, an
AttributeError on ``None``, torch's "Default process group has not been initialized", or, for the collectives, gave a
silent one-rank answer. A strategy keeping something usable past teardown says which calls in its ``engine_calls``
(``ddp`` keeps its trained module: ``unwrapped_model`` and ``eval_module`` still answer).

A model a strategy served whose calls need the group (``tp``'s, the parallelized model itself, which ``load_placed``
hands to ``deepseek eval`` / ``generate``) refuses too once the strategy released it: :func:`refuse_served` sets each
of its entry points (:data:`SERVED_CALLS`) on the instance to a function raising the same line, at teardown, so that
nothing is added to its calls before (no hook, no wrapper: ``torch.compile`` and CUDA graphs see the model as it is).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from deepseek.errors import UsageError

ENGINE_CALLS: frozenset[str] = frozenset({
    # the whole model and the module evaluation calls
    "unwrapped_model", "eval_module",
    # the step and its parts
    "train_step", "forward_backward", "accumulation", "to_device", "backward", "clip_grad_norm", "optimizer_step",
    "zero_grad", "discard_step", "set_lr", "step_metrics", "weights_finite", "sync_buffers",
    # evaluation and the means and sums over the ranks
    "evaluate", "reduce_mean", "reduce_sum",
    # checkpoints and the full state they gather (deepspeed's full_state, a pipeline stage's stage_state)
    "save_checkpoint", "load_checkpoint", "full_state", "stage_state",
    # the collectives: after teardown the group is gone, and a one-rank answer would be wrong on the others
    "barrier", "broadcast_object", "any_rank", "all_ranks", "all_reduce_tensor_mean", "check_cluster",
})
"""The members of a distributed strategy refused after teardown (those a class has; ``eval_module`` is a property)."""


SERVED_CALLS: tuple[str, ...] = ("forward", "generate", "new_cache", "forward_cached", "decode_window",
                                  "serving_forward")
"""The entry points of a served model that compute (``model(...)`` calls ``forward``): capability ``generation``'s,
``cached_decoding``'s and ``serving``'s (deepseek.models.capabilities)."""


def released_error(strategy: str, call: str) -> UsageError:
    """The one line of ``call`` (``"save_checkpoint()"``, ``"eval_module"``) made on ``strategy`` after its teardown."""
    return UsageError(f"{strategy}: {call} after teardown, which released the model and the process group; call it "
                      "before teardown (under fit: in a deepseek_train_end hook), or load the last checkpoint")


def guard_engine_calls(cls: type, names: Iterable[str], *, inherited: bool = False) -> None:
    """Wrap each member of ``cls`` named in ``names`` so that it first calls ``self.engine_held(...)``: those ``cls``
    defines itself, and with ``inherited`` those it inherits too (set on ``cls``)."""
    for name in sorted(names):
        owner = next((k for k in (cls.__mro__ if inherited else (cls,)) if name in k.__dict__), None)
        if owner is None:
            continue
        member = owner.__dict__[name]
        if isinstance(member, property):
            assert member.fget is not None, f"{cls.__qualname__}.{name}: a property without a getter"
            setattr(cls, name, property(_checked(member.fget, name), member.fset, member.fdel, member.__doc__))
        elif callable(member):
            setattr(cls, name, _checked(member, f"{name}()"))
        else:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}.{name}: {type(member).__name__} is not a method or "
                            "a property; the calls refused after teardown (released.ENGINE_CALLS) must be")


def _checked(method: Callable[..., Any], call: str) -> Callable[..., Any]:
    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.engine_held(call)
        return method(self, *args, **kwargs)

    return checked


def refuse_served(module: Any, strategy: str) -> None:
    """After ``strategy``'s teardown: each of :data:`SERVED_CALLS` on ``module`` (an ``nn.Module`` it served) raises
    :func:`released_error`'s line ("the served model's generate()"). Set on the instance, shadowing the class's methods
    (the class, and so the capabilities it offers, stay); called by the strategy's ``release_engine``."""
    for name in SERVED_CALLS:
        object.__setattr__(module, name, _refusal(strategy, f"the served model's {name}()"))


def _refusal(strategy: str, call: str) -> Callable[..., Any]:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise released_error(strategy, call)

    return refused
