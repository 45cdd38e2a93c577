"""In ``auto`` a tried pass is kept only when the pipeline with it is faster by more than the
timing noise: a pass that changes nothing is no longer kept or left out by chance (a decision
that is then cached)."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

import deepseek
from deepseek import hookimpl
from deepseek.graph import search
from deepseek.graph.passes import GraphPass
from deepseek.graph.verify import clear_gain
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

# Calls of two pipelines that do the same work, timed in turn (ms): the paired differences
# scatter around zero (by up to 0.3 ms), and by chance "with" has the lower median.
SAME_WITHOUT = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00, 1.02, 0.98]
NOISE = [0.3, -0.3, 0.2, -0.2, 0.25, -0.25, -0.1, -0.05, 0.05, -0.15]
SAME_WITH = [t + e for t, e in zip(SAME_WITHOUT, NOISE, strict=True)]
# A real gain: every call 0.5 ms faster, with the same noise.
FASTER_WITH = [t - 0.5 for t in SAME_WITH]


def test_clear_gain_needs_more_than_the_spread() -> None:
    assert statistics.median(SAME_WITH) < statistics.median(SAME_WITHOUT)  # the old rule kept it
    clearly, gain, spread = clear_gain(SAME_WITH, SAME_WITHOUT)
    assert not clearly and gain == pytest.approx(0.075) and spread == pytest.approx(0.15)
    clearly, gain, spread = clear_gain(FASTER_WITH, SAME_WITHOUT)
    assert clearly and gain == pytest.approx(0.575) and spread == pytest.approx(0.15)


class Rewrites(GraphPass):
    """Recompiles the graph unchanged: the same work."""

    name = "acme.rewrites"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        self.record("recompiled")
        gm.recompile()
        return gm


@pytest.mark.parametrize(("with_it", "status"), [(SAME_WITH, "not-faster"), (FASTER_WITH, "applied")])
def test_auto_keeps_a_tried_pass_only_when_clearly_faster(monkeypatch: pytest.MonkeyPatch, with_it: list[float],
                                                          status: str) -> None:
    class Acme:
        @hookimpl
        def deepseek_register_passes(self, register):  # type: ignore[no-untyped-def]
            register("acme.rewrites", Rewrites, description="the same work")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Acme(), dist="acme-noise", version="1.0").status == "ok"
    monkeypatch.setattr(search, "call_ms", lambda fns, args, **kw: [list(with_it), list(SAME_WITHOUT)])
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    plan = deepseek.optimize(model, torch.randn(3, 8), stages=["fx"], runs=10, warmup=0, cache=False, host=host).plan
    (report,) = [r for r in plan.passes if r.name == "acme.rewrites"]
    assert report.status == status and (report.ms_with, report.ms_without) == (round(statistics.median(with_it), 3), 1.0)
    assert ("acme.rewrites" in plan.pipeline) == (status == "applied")
