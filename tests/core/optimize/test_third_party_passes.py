"""``auto`` and third-party passes: a registered pass that is exact and faster is kept, one that
is slower, wrong, raising or broken is left out with the reason in the plan, and the decision
cache knows which third-party passes were considered.

The passes come from a throwaway plugin distribution (a real dist-info on ``sys.path``, loaded
by the real plugin host). The model calls ``padded``, an identity that sleeps 20 ms: removing it
is unambiguously faster, adding a second call unambiguously slower, whatever the machine load.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import fx, nn

import deepseek
from deepseek.graph.plan import OptimizerWarning, Plan
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

PAD_SECONDS = 0.02


def padded(x: torch.Tensor) -> torch.Tensor:
    """An identity that wastes time (a stand-in for an expensive no-op in a real model)."""
    time.sleep(PAD_SECONDS)
    return x


fx.wrap("padded")  # symbolic tracing records calls to it as graph nodes


class Padded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(padded(self.a(x))))


PASSES = '''
import time

import torch
from deepseek import hookimpl
from deepseek.graph.passes import GraphPass, finish

NAMES = ("acme.add-padding", "acme.drop-padding", "acme.explodes", "acme.scale-output", "acme.says-done")


@hookimpl
def deepseek_register_passes(register):
    for name in NAMES:
        cls = "".join(part.title() for part in name.split(".")[1].split("-"))
        register(name, f"{__name__}:{cls}", description=name)
    register("acme.missing", "acme_not_installed:Missing", description="its module is missing")


def slow_identity(x):
    time.sleep(0.02)
    return x


class _Padding(GraphPass):
    """Rewrites each call of ``padded`` with ``rewrite``."""

    verb = ""

    def apply(self, gm, example_inputs):
        calls = [n for n in gm.graph.nodes if getattr(n.target, "__name__", "") == "padded"]
        for node in calls:
            self.rewrite(gm, node)
        self.record(f"{self.verb} {len(calls)} padded call(s)")
        return finish(gm) if calls else None


class DropPadding(_Padding):
    name = "acme.drop-padding"
    description = "remove calls to padded (an identity)"
    verb = "removed"

    def rewrite(self, gm, node):
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)


class AddPadding(_Padding):
    name = "acme.add-padding"
    description = "exact but slower: a second sleeping identity after each padded call"
    verb = "doubled"

    def rewrite(self, gm, node):
        with gm.graph.inserting_after(node):
            slow = gm.graph.call_function(slow_identity, (node,))
        node.replace_all_uses_with(slow, delete_user_cb=lambda user: user is not slow)


class Explodes(GraphPass):
    name = "acme.explodes"
    description = "raises"

    def apply(self, gm, example_inputs):
        raise RuntimeError("boom")


class SaysDone(GraphPass):
    name = "acme.says-done"
    description = "wrong: returns a string, not the graph"

    def apply(self, gm, example_inputs):
        return "done"


class ScaleOutput(GraphPass):
    name = "acme.scale-output"
    description = "wrong: multiplies the output by 1.01"

    def apply(self, gm, example_inputs):
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            scaled = gm.graph.call_function(torch.mul, (out.args[0], 1.01))
        out.args = (scaled,)
        return finish(gm)
'''


@pytest.fixture
def use_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., PluginHost]]:
    """``use_plugins(*dists)``: a fresh plugin host loading core plus exactly ``dists``, of which
    ``deepseek-acme`` is the throwaway distribution holding :data:`PASSES`."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "plugins"))
    from plugin_testing import DistFactory

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    DistFactory(site)("deepseek-acme", {"acme_passes": PASSES})
    hosts: list[PluginHost] = []

    def use(*dists: str) -> PluginHost:
        hosts.append(PluginHost(PluginSettings(allow=frozenset(dists))))
        return hosts[-1]

    yield use
    sys.modules.pop("acme_passes", None)


def search(model: nn.Module, x: torch.Tensor, **options: object) -> tuple[nn.Module, Plan, list[str]]:
    """``deepseek.optimize`` in ``auto`` on the plain graph stage; the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        om = deepseek.optimize(model, x, stages=["fx"], runs=5, warmup=1, **options)
    assert om.plan is not None
    return om, om.plan, [str(w.message) for w in caught if issubclass(w.category, OptimizerWarning)]


def test_auto_keeps_a_faster_exact_pass_and_drops_the_others_with_reasons(use_plugins: Callable[..., PluginHost]) -> None:
    host = use_plugins("deepseek-acme")
    torch.manual_seed(0)
    model, x = Padded().eval(), torch.randn(3, 16)
    om, plan, messages = search(model, x, cache=False, host=host)
    reports = {r.name: r for r in plan.passes}
    tried = ["acme.add-padding", "acme.drop-padding", "acme.explodes", "acme.missing", "acme.says-done",
             "acme.scale-output"]
    assert sorted(r.name for r in plan.passes if r.name.startswith("acme.")) == tried

    kept = reports["acme.drop-padding"]
    assert kept.status == "applied" and kept.changes == ["removed 1 padded call(s)"]
    assert kept.ms_with is not None and kept.ms_without is not None and kept.ms_without >= PAD_SECONDS * 1e3
    assert plan.pipeline[-2:] == ["acme.drop-padding", "fx"]
    with torch.no_grad():
        assert torch.equal(om(x), model(x))

    slower = reports["acme.add-padding"]
    assert slower.status == "not-faster" and slower.max_rel_error == 0.0
    assert reports["acme.explodes"].status == "error" and reports["acme.explodes"].error == "RuntimeError: boom"
    wrong = reports["acme.scale-output"]
    assert wrong.status == "dropped" and "> tolerance 0.0001" in str(wrong.error)
    says = reports["acme.says-done"]
    assert says.status == "error" and says.error == "apply returned str, not a GraphModule"
    assert any("pass 'acme.says-done' dropped: its apply returned str, not the rewritten torch.fx.GraphModule" in m
               for m in messages), messages
    missing = reports["acme.missing"]
    assert missing.status == "error" and "could not be created" in str(missing.error)
    assert "acme_not_installed" in str(missing.error)
    for name in ("acme.explodes", "acme.scale-output", "acme.missing"):
        assert any(f"pass {name!r} dropped" in m for m in messages), messages
    as_json = plan.as_dict()["passes"]
    assert {p["name"]: p["status"] for p in as_json}["acme.add-padding"] == "not-faster"


def test_the_decision_cache_knows_which_third_party_passes_were_considered(
    use_plugins: Callable[..., PluginHost], tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model, x = Padded().eval(), torch.randn(3, 16)
    _, without, _ = search(model, x, cache_dir=tmp_path, host=use_plugins())
    assert "acme.drop-padding" not in without.pipeline and without.cache_path is not None
    host = use_plugins("deepseek-acme")
    _, first, _ = search(model, x, cache_dir=tmp_path, host=host)
    assert first.cache_path != without.cache_path and not first.cache_hit
    assert "acme.drop-padding" in first.pipeline
    om, replayed, _ = search(model, x, cache_dir=tmp_path, host=host)
    assert replayed.cache_hit and replayed.cache_path == first.cache_path
    assert replayed.pipeline == first.pipeline
    with torch.no_grad():
        assert torch.equal(om(x), model(x))
