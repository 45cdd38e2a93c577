"""``deepseek.optimize`` never leaves the user's model silently changed by a pass: a pass that
writes to the model's own parameters or buffers (in place, through ``.data`` or by replacing
them), by a lot or by one part in a million, or changes a sub-module's settings, is refused in one line naming the pass and its
distribution and saying the model must be reloaded; no pipeline is returned."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import deepseek
from deepseek import hookimpl
from deepseek.errors import PluginError
from deepseek.graph.guard import fingerprint
from deepseek.graph.passes import GraphPass
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class Doubles(GraphPass):
    """Doubles the weights it sees, in place (they are the model's), and declines."""

    name = "acme.doubles"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        for p in gm.parameters():
            p.mul_(2.0)
        return None


class Nudges(GraphPass):
    """Scales one weight by 1 + 1e-6 through ``.data`` (no version bump) and reports a rewrite."""

    name = "acme.nudges"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        next(iter(gm.parameters())).data.mul_(1 + 1e-6)
        return gm


class Swaps(GraphPass):
    """Swaps two rows of a weight through ``.data`` (the values move, their sum stays)."""

    name = "acme.swaps"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        w = next(iter(gm.parameters())).data
        w[[0, 1]] = w[[1, 0]]
        return gm


class Replaces(GraphPass):
    """Gives a buffer a new tensor of the same values (``.data =``)."""

    name = "acme.replaces"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        for b in gm.buffers():
            b.data = b.data.clone()
        return gm


class Retunes(GraphPass):
    """Sets the BatchNorm's eps in the module the graph shares with the model."""

    name = "acme.retunes"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        for m in gm.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eps = 0.5
        return gm


class Harmless(GraphPass):
    name = "acme.harmless"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        self.record("looked")
        return gm


PASSES = {"acme.doubles": Doubles, "acme.nudges": Nudges, "acme.swaps": Swaps, "acme.replaces": Replaces,
          "acme.retunes": Retunes, "acme.harmless": Harmless}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    class Acme:
        @hookimpl
        def deepseek_register_passes(self, register):  # type: ignore[no-untyped-def]
            for name, cls in PASSES.items():
                register(name, cls, description=name)

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Acme(), dist="acme-passes", version="1.0").status == "ok"
    return host


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4)).eval()


# the registration's label, as every component kind's blame line names it
LINE = (r"^optimizer: pass '{}' \(acme-passes 1\.0, registered by test_optimize_guard\) changed the model's own parameters, buffers or modules in place \({}\); "
        r"nothing was optimized and the model you passed is no longer the one you loaded: reload it before using "
        r"it, and leave the pass out \(passes=\[\.\.\.\] without it\) or fix it")


@pytest.mark.parametrize(("name", "first"), [
    ("acme.doubles", r"0\.weight and 4 more"),  # the Linears' and BatchNorm's weights and biases
    ("acme.nudges", r"0\.weight"),             # 1 + 1e-6 through .data: no _version bump
    ("acme.swaps", r"0\.weight"),              # same values, other places
    ("acme.replaces", r"1\.running_mean and 2 more"),  # new tensors of equal values
    ("acme.retunes", r"1/"),                            # a module's setting (eps), no tensor
])
def test_a_pass_that_writes_to_the_model_is_refused(host: PluginHost, name: str, first: str) -> None:
    model, x = _model(), torch.randn(5, 8)
    with pytest.raises(PluginError, match=LINE.format(re.escape(name), first)):
        deepseek.optimize(model, x, passes=["fuse-linear", name], host=host, cache=False)


def test_auto_refuses_a_third_party_pass_that_writes_to_the_model(host: PluginHost, tmp_path) -> None:  # noqa: ANN001
    """The report's case: under ``auto`` the doubling pass declined (or was dropped) and the
    pipeline came back computed from the doubled model; now nothing comes back and nothing is
    cached."""
    only = PluginHost(PluginSettings(autoload=False))

    class One:
        @hookimpl
        def deepseek_register_passes(self, register):  # type: ignore[no-untyped-def]
            register("acme.doubles", Doubles, description="doubles")

    assert only.register_plugin(One(), dist="acme-passes", version="1.0").status == "ok"
    # After fold-batchnorm the graph holds new fused weights for the first Linear: what it doubles
    # of the model's own is the last Linear's.
    with pytest.raises(PluginError, match=LINE.format(r"acme\.doubles", r"3\.weight and 1 more")):
        deepseek.optimize(_model(), torch.randn(5, 8), host=only, cache_dir=tmp_path, runs=2, warmup=0)
    assert not list(tmp_path.rglob("*.json"))


def test_passes_that_leave_the_model_alone_pass(host: PluginHost) -> None:
    model, x = _model(), torch.randn(5, 8)
    before = fingerprint(model)
    opt = deepseek.optimize(model, x, passes=["fuse-linear", "acme.harmless"], host=host, cache=False)
    torch.testing.assert_close(opt(x), model(x))
    assert fingerprint(model) == before
    assert [r.status for r in opt.plan.passes][-1] == "applied"


def test_a_pass_given_as_an_instance_is_named_by_its_class(host: PluginHost) -> None:
    with pytest.raises(PluginError, match=r"^optimizer: pass 'acme\.nudges' \(class test_optimize_guard\.Nudges\) "):
        deepseek.optimize(_model(), torch.randn(5, 8), passes=[Nudges()], cache=False)
