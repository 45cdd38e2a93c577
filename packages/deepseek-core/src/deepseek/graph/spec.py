"""What one ``deepseek.optimize`` call asks for: passes, stages and options, as a :class:`Spec`.

Pass names resolve through the plugin host, so a third-party pass is named like a core one.
``auto`` applies core's :data:`DEFAULT_GRAPH_PASSES` in order, then *tries* every further pass it
considers: the passes named beside ``"auto"``, then every graph pass registered by a distribution
other than deepseek-core (by name). A tried pass is kept only when the pipeline is faster with it
(see :mod:`deepseek.graph.search`). Registered passes that declare their own ``tolerance``
(reduced precision) are left to ``precision=`` or to being named; registered terminal passes
join the final-stage candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepseek.errors import PluginError, UsageError
from deepseek.graph.passes import GraphPass, PassReport
from deepseek.graph.plan import Stage, all_stages

DEFAULT_GRAPH_PASSES: tuple[str, ...] = (
    "drop-dropout",
    "fold-batchnorm",
    "fuse-linear",
    "merge-siblings",
    "attention-sdpa",
    "const-fold",
)
"""Graph passes ``auto`` applies, in this order."""

PRECISIONS: dict[str, str | None] = {"fp32": None, "bf16": "bf16", "int8": "int8-dynamic"}
"""``precision=`` value -> the pass that implements it."""


def resolve_pass(spec: str | GraphPass, host: Any = None) -> GraphPass:
    """A pass instance from a name registered on ``host`` (default: the process's plugin host;
    third-party plugins included) or an instance."""
    if isinstance(spec, GraphPass):
        return spec
    from deepseek.plugins.calls import created
    from deepseek.plugins.host import get_host

    component = (host or get_host()).resolve("pass", spec)
    obj = created(component)  # what its own code raises: one line naming it
    if not isinstance(obj, GraphPass):
        raise PluginError(
            f"{component.label}: created a {type(obj).__name__}, not a deepseek.graph.passes.GraphPass; its plugin "
            "must register a GraphPass subclass or a factory returning one (docs/plugins.md section 5)"
        )
    return obj


def pass_label(graph_pass: GraphPass, host: Any = None) -> str:
    """How a message names ``graph_pass``: the label of the registration of its class on ``host``
    (default: the process's), ``pass 'acme.fold' (deepseek-acme 0.1.0, registered by
    deepseek_acme.plugin)``, as every other component kind is named; a pass given as an instance of
    a class registered nowhere there, by where its class lives (``pass 'acme.fold' (class
    my_module.Fold)``)."""
    from deepseek.plugins.host import get_host

    for comp in (host or get_host()).components("pass"):
        if comp.name == graph_pass.name:
            try:
                if comp.load() is type(graph_pass):
                    return comp.label
            except Exception:  # noqa: BLE001, S112 - another component of that name; keep looking
                continue
    return f"pass {graph_pass.name!r} (class {type(graph_pass).__module__}.{type(graph_pass).__qualname__})"


@dataclass
class ThirdParty:
    """The registered passes of other distributions that ``auto`` considers."""

    trials: list[GraphPass] = field(default_factory=list)
    stages: list[GraphPass] = field(default_factory=list)
    unavailable: list[PassReport] = field(default_factory=list)
    """Passes that could not be created (reported with status ``error``)."""
    identities: list[str] = field(default_factory=list)
    """``dist==version:name`` of each one considered (part of the decision-cache key)."""


def third_party_passes(exclude: set[str], host: Any = None) -> ThirdParty:
    """Every pass registered on ``host`` (default: the process's plugin host) by a distribution
    other than deepseek-core, except ``exclude``."""
    from deepseek.plugins.host import CORE_DIST, get_host

    host = host or get_host()
    found = ThirdParty()
    for comp in host.components("pass"):
        if comp.dist == CORE_DIST or comp.name in exclude:
            continue
        try:
            obj = host.create("pass", comp.qualified_name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin pass is reported, never fatal
            why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            found.unavailable.append(PassReport(comp.name, status="error", error=f"could not be created: {why}"))
            found.identities.append(f"{comp.dist}=={comp.version}:{comp.name}")
            continue
        if not isinstance(obj, GraphPass):
            error = f"{comp.target_text} created a {type(obj).__name__}, not a GraphPass"
            found.unavailable.append(PassReport(comp.name, status="error", error=error))
        elif obj.tolerance is not None:
            continue
        elif obj.terminal:
            found.stages.append(obj)
        else:
            found.trials.append(obj)
        found.identities.append(f"{comp.dist}=={comp.version}:{comp.name}")
    return found


@dataclass
class Spec:
    """Parsed options of :func:`deepseek.optimize`."""

    auto: bool
    graph_passes: list[GraphPass]
    """Applied in order, each kept when it verifies (with ``auto``: core's defaults)."""
    stages: list[Stage]
    trial_passes: list[GraphPass] = field(default_factory=list)
    """``auto`` only: each kept only when it verifies and the pipeline is faster with it."""
    unavailable: list[PassReport] = field(default_factory=list)
    third_party: list[str] = field(default_factory=list)
    precision: str = "fp32"
    tolerance: float | None = None
    use_cache: bool = True
    cache_dir: Path | None = None
    runs: int = 10
    warmup: int = 2
    host: Any = None
    """The plugin host pass names resolve on (``None``: the process's)."""

    @property
    def cacheable(self) -> bool:
        return self.auto and self.use_cache

    def precision_pass(self) -> GraphPass | None:
        name = PRECISIONS[self.precision]
        return None if name is None else resolve_pass(name, self.host)

    def cache_extra(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "tolerance": self.tolerance,
            "passes": [p.name for p in self.graph_passes],
            "trials": [p.name for p in self.trial_passes],
            "third_party": list(self.third_party),
            "stages": [s.name for s in self.stages],
        }


def parse_spec(
    passes: str | Sequence[str | GraphPass] | None,
    *,
    device: torch.device,
    stages: Sequence[str] | None = None,
    **options: Any,
) -> Spec:
    """Turn ``passes=`` into a :class:`Spec` (unknown names fail here, before any work).

    ``stages`` picks ``auto``'s final candidates by name (see :func:`all_stages`); by default
    the device's default stages, and registered third-party terminal passes, are timed.
    """
    precision = options.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if passes is None or passes == "none" or passes == "eager":
        items: list[str | GraphPass] = []
    elif isinstance(passes, str):
        items = [passes]
    else:
        items = list(passes)
    auto = "auto" in items
    host = options.get("host")
    resolved = [resolve_pass(p, host) for p in items if p != "auto"]
    graph = [p for p in resolved if not p.terminal]
    terminal = [p for p in resolved if p.terminal]
    use_cache = options.get("use_cache", True) and all(isinstance(p, str) for p in items)
    options = {**options, "use_cache": use_cache}
    if not auto:
        if len(terminal) > 1:
            names = ", ".join(p.name for p in terminal)
            raise UsageError(f"passes {names} are all final stages; name at most one of them")
        return Spec(auto=False, graph_passes=graph, stages=[Stage(p.name, (p,)) for p in terminal], **options)
    builtin = [resolve_pass(n, host) for n in DEFAULT_GRAPH_PASSES]
    others = third_party_passes({p.name for p in resolved} | set(DEFAULT_GRAPH_PASSES), host)
    trials = [p for p in graph if p.name not in DEFAULT_GRAPH_PASSES] + others.trials
    default, extra = all_stages(device)
    own = [Stage(p.name, (p,)) for p in terminal + others.stages]
    candidates = default + own
    if stages is not None:
        known = {s.name: s for s in default + extra + own}
        unknown = [n for n in stages if n not in known]
        if unknown:
            raise UsageError(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
        candidates = [known[n] for n in dict.fromkeys(stages)]
    return Spec(auto=True, graph_passes=builtin, stages=candidates, trial_passes=trials,
                unavailable=others.unavailable, third_party=others.identities, **options)
