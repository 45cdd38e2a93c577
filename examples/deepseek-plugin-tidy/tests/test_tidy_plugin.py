"""deepseek-tidy as an installed plugin: discovered, registered, cheap to import, no conflicts."""

from __future__ import annotations

import subprocess
import sys

import deepseek
import torch
from deepseek.graph.capture import capture
from deepseek.graph.passes import GraphPass
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from torch import nn

from deepseek_tidy import plugin


def _host() -> PluginHost:
    return PluginHost(PluginSettings(allow=frozenset({"deepseek-tidy"})))


def test_discovered_through_its_entry_point() -> None:
    host = _host()
    record = host.records["deepseek-tidy"]
    assert (record.status, record.edition, record.modules) == ("ok", "third-party", ["deepseek_tidy.plugin"])
    assert record.components == {"pass": [plugin.PASS_NAME], "model": ["tidy.line-classifier"],
                                 "dataset": ["tidy.source-lines"], "strategy": ["tidy.allreduce"]}
    comp = host.resolve("pass", plugin.PASS_NAME)
    assert (comp.dist, comp.target) == ("deepseek-tidy", "deepseek_tidy.casts:DropNoopCasts")
    names = {impl.plugin_name for impl in host.hook.deepseek_train_step_end.get_hookimpls()}
    assert "deepseek-tidy:tidy" in names


def test_create_pass_through_the_public_api() -> None:
    graph_pass = deepseek.create_pass(plugin.PASS_NAME)
    assert isinstance(graph_pass, GraphPass) and graph_pass.name == plugin.PASS_NAME
    model = nn.Sequential(nn.Linear(3, 3)).eval()
    x = torch.randn(2, 3)
    gm, _ = capture(model, (x,))
    out, report = graph_pass.run(gm, (x,))
    assert report.status == "no-op" and out is None


def test_plugin_module_does_not_import_torch() -> None:
    code = "import sys, deepseek_tidy.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
