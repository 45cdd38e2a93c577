"""The optimizer's parameter groups: ``[optimizer]``'s weight-decay rule and its
``[[optimizer.groups]]`` rules (:class:`~deepseek.config.groups.ParamGroupRule`) turned into the
groups a :class:`~deepseek.training.optimizers.OptimizerBuilder` receives.

The layout is fixed by the config, not by the parameters a rank holds: two groups per rule and
two for the parameters no rule takes, in the order ``[rest: matrices, rest: vectors, rule 0:
matrices, rule 0: vectors, ...]``, every one present even when empty (a pipeline stage or a shard
may hold none of a rule's parameters). So optimizer checkpoints line up across strategies, and
with no rules the layout is the two groups (decay, no decay) it has always been.

Each group carries ``weight_decay`` and ``lr_scale``; :meth:`Strategy.set_lr` sets a group's
rate to the schedule's times its ``lr_scale``. Rules match parameter names with ``fnmatch``
(the model's own names: a strategy passes ``module.named_parameters()``, pipeline stages and
shards keep the model's names); a parameter takes the first rule that matches it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepseek.config.groups import ParamGroupRule


def rule_of(name: str, rules: Sequence[ParamGroupRule]) -> int | None:
    """The index of the first rule whose patterns match ``name`` (None: no rule does)."""
    for i, rule in enumerate(rules):
        if any(fnmatchcase(name, pattern) for pattern in rule.match):
            return i
    return None


def group_settings(rules: Sequence[ParamGroupRule], weight_decay: float) -> list[tuple[float, float]]:
    """``(weight_decay, lr_scale)`` of every group, in the layout's order."""
    out = [(weight_decay, 1.0), (0.0, 1.0)]
    for r in rules:
        own = r.weight_decay
        out += [(weight_decay if own is None else own, r.lr_scale), (0.0 if own is None else own, r.lr_scale)]
    return out


def group_index(name: str, ndim: int, rules: Sequence[ParamGroupRule]) -> int:
    """The group (layout index) of parameter ``name`` with ``ndim`` dimensions."""
    r = rule_of(name, rules)
    return 2 * (0 if r is None else r + 1) + (0 if ndim >= 2 else 1)


def _laid_out(named: Iterable[tuple[str, Any]], rules: Sequence[ParamGroupRule]) -> list[list[tuple[str, Any]]]:
    """The trainable ``(name, parameter)`` pairs of ``named`` in the layout's groups (module
    docstring), every group present."""
    groups: list[list[tuple[str, Any]]] = [[] for _ in range(2 + 2 * len(rules))]
    for name, p in named:
        if p.requires_grad:
            groups[group_index(name, p.ndim, rules)].append((name, p))
    return groups


def build_groups(named: Iterable[tuple[str, Any]], rules: Sequence[ParamGroupRule],
                 weight_decay: float) -> list[dict[str, Any]]:
    """The optimizer's groups (module docstring's layout) over the trainable ``(name, parameter)``
    pairs."""
    return [{"params": [p for _, p in members], "weight_decay": wd, "lr_scale": scale}
            for members, (wd, scale) in zip(_laid_out(named, rules), group_settings(rules, weight_decay), strict=True)]


def group_members(named: Iterable[tuple[str, Any]], rules: Sequence[ParamGroupRule]) -> list[list[str]]:
    """The names :func:`build_groups` puts in each group (the layout's order): what an optimizer
    checkpoint of a run with these ``rules`` holds, for checks made before any optimizer exists."""
    return [[name for name, _ in members] for members in _laid_out(named, rules)]


def unmatched_rules(names: Iterable[str], rules: Sequence[ParamGroupRule]) -> list[int]:
    """Indices of the rules that take no parameter among ``names`` (the whole model's): a
    misspelt pattern, or one shadowed by an earlier rule."""
    taken = {rule_of(n, rules) for n in names}
    return [i for i in range(len(rules)) if i not in taken]


def describe_names(names: Sequence[str], limit: int = 3) -> str:
    """A few of the model's parameter names, for messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def tied_aliases(module: Any) -> dict[str, str]:
    """Tied parameters of ``module``: ``{other name: first name}`` (a GPT's ``lm_head.weight`` ->
    ``wte.weight``). Such a weight trains, and is stored, under its first name only."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def is_named(items: Sequence[Any]) -> bool:
    """Whether ``items`` are ``(name, parameter)`` pairs (``named_parameters()``)."""
    return all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in items)


def check_group_rules(rules: Sequence[ParamGroupRule], names: Sequence[str],
                      aliases: Mapping[str, str] | None = None) -> None:
    """ConfigError naming the first rule that takes no parameter of the model (``names``: all of
    them, as the engine built it; ``aliases``: :func:`tied_aliases`), with some of the model's
    names to write patterns against, or the name a tied alias trains under."""
    from deepseek.errors import ConfigError

    idle = unmatched_rules(names, rules)
    if idle:
        i = idle[0]
        patterns = rules[i].match
        tied = next((f"; {a!r} is tied to {n!r} and trains under that name" for a, n in (aliases or {}).items()
                     if any(fnmatchcase(a, p) for p in patterns)), "")
        shadow = " or only ones an earlier rule takes" if any(
            any(fnmatchcase(n, p) for p in patterns) for n in names) else ""
        raise ConfigError(
            f"optimizer.groups.{i}.match: {list(patterns)} matches no parameter of the model{shadow}{tied}; "
            f"its names look like {describe_names(list(names))} (deepseek config params lists them all)")


def check_model_rules(rules: Sequence[ParamGroupRule], model: Any) -> None:
    """:func:`check_group_rules` over ``model``'s parameters (a module, possibly on the meta
    device)."""
    check_group_rules(rules, [n for n, _ in model.named_parameters()], tied_aliases(model))
