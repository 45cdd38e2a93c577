"""``deepseek plugins new NAME``: scaffold a third-party plugin distribution whose test passes."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from deepseek._version import __version__
from deepseek.errors import UsageError

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
RESERVED = frozenset({"core", "pro", "enterprise"})
"""Names of the first-party editions, which a third-party plugin cannot take."""


def validate_name(name: str) -> str:
    """The plugin's short name (``acme`` from ``acme`` or ``deepseek-acme``); UsageError if bad."""
    short = name.strip().removeprefix("deepseek-")
    if not _NAME_RE.match(short) or len(short) > 40:
        raise UsageError(
            f"plugins new: invalid plugin name {name!r}; use lower-case letters and digits, "
            "words joined by single '-', starting with a letter, at most 40 characters "
            "(e.g. 'acme' or 'my-passes')"
        )
    if short in RESERVED:
        raise UsageError(
            f"plugins new: {short!r} is the name of a first-party edition (deepseek-{short}); "
            "choose another name"
        )
    return short


def _core_requirement() -> str:
    major, minor = (int(p) for p in __version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"deepseek-core>={__version__},<{upper}"


def render(short: str) -> dict[str, str]:
    """Relative path -> text of every file of the scaffold for plugin ``short``."""
    dist, pkg = f"deepseek-{short}", f"deepseek_{short.replace('-', '_')}"
    values = {
        "dist": dist,
        "pkg": pkg,
        "short": short,
        "pass_name": f"{short}.remove-identity",
        "core_req": _core_requirement(),
    }
    return {
        path.format(**values): text.format(**values)
        for path, text in _TEMPLATES.items()
    }


def scaffold(name: str, parent: Path | str = ".") -> Path:
    """Write ``deepseek-NAME/`` under ``parent`` (all files or none) and return its path."""
    short = validate_name(name)
    parent = Path(parent)
    if not parent.is_dir():
        raise UsageError(f"plugins new: --dir {str(parent)!r} is not a directory; create it first")
    target = parent / f"deepseek-{short}"
    if target.exists():
        raise UsageError(
            f"plugins new: {target} already exists; nothing was written (choose another name "
            "or --dir)"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".deepseek-{short}-", dir=parent))
    try:
        for rel, text in render(short).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists():  # created meanwhile: never replace someone's files
            raise UsageError(f"plugins new: {target} already exists; nothing was written")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


_PYPROJECT = """\
[build-system]
requires = ["hatchling>=1.24"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "0.1.0"
description = "A plugin for the DeepSeek framework: one graph pass and one training callback."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["{core_req}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The deepseek plugin host discovers the plugin through this entry point.
[project.entry-points.deepseek]
{short} = "{pkg}.plugin"

[tool.hatch.build.targets.wheel]
packages = ["src/{pkg}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

_README = """\
# {dist}

A plugin for the DeepSeek framework, made by `deepseek plugins new {short}`.

- graph pass `{pass_name}`: removes `nn.Identity` calls from a `torch.fx` graph;
- training callback: adds `{short}.loss_ema` (moving average of the loss) to every step's metrics.

```bash
pip install -e ./{dist}
pytest {dist}
deepseek plugins list            # shows {dist} and its pass
deepseek plugins which pass {pass_name}
```

See the plugin authoring guide (docs/plugins.md) and the hook reference (docs/hooks.md).
"""

_INIT = '''\
"""{dist}: a plugin for the DeepSeek framework."""

__version__ = "0.1.0"
'''

_PLUGIN = '''\
"""The module named by the ``deepseek`` entry point of {dist}.

Keep it cheap to import (no torch here): the pass is registered as a lazy ``module:attribute``
target, imported only when someone creates it, so ``deepseek --help`` stays fast.
"""

from __future__ import annotations

from typing import Any

from deepseek import hookimpl
from deepseek.hookspecs import RegisterFn

PASS_NAME = "{pass_name}"
_loss_ema: dict[int, float] = {{}}


@hookimpl
def deepseek_register_passes(register: RegisterFn) -> None:
    """Register the graph pass of this plugin."""
    register(
        PASS_NAME,
        "{pkg}.passes:RemoveIdentity",
        description="remove nn.Identity calls from a torch.fx graph",
    )


@hookimpl
def deepseek_train_step_end(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """Add an exponential moving average of the loss to the step's metrics."""
    if "loss" not in metrics:
        return
    loss = float(metrics["loss"])
    previous = _loss_ema.get(id(trainer))
    value = loss if previous is None or step <= 1 else 0.9 * previous + 0.1 * loss
    _loss_ema[id(trainer)] = value
    metrics["{short}.loss_ema"] = value
'''

_PASSES = '''\
"""The graph pass of {dist} (imports torch; loaded only when the pass is created)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deepseek.optimize.passes import GraphPass, finish
from torch import fx, nn


class RemoveIdentity(GraphPass):
    """Remove calls to ``nn.Identity`` sub-modules: their output is exactly their input."""

    name = "{pass_name}"
    description = "remove nn.Identity calls from a torch.fx graph"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        """Rewrite ``gm``; return it, or ``None`` when there was nothing to remove."""
        removed = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or not node.args:
                continue
            if not isinstance(gm.get_submodule(node.target), nn.Identity):
                continue
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            removed += 1
        if not removed:
            return None
        self.record(f"removed {{removed}} nn.Identity call(s)")
        return finish(gm)
'''

_TEST = '''\
"""Tests of {dist}: ``pip install -e ./{dist} && pytest {dist}``."""

from __future__ import annotations

import pytest
import torch
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from torch import fx, nn

from {pkg} import plugin


def make_host() -> PluginHost:
    """A host with core's built-ins and this plugin only, whatever else is installed."""
    return PluginHost(PluginSettings(allow=frozenset({{"{dist}"}})))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.skip = nn.Identity()
        self.b = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.skip(self.a(x))))


def test_plugin_is_discovered_and_registers_its_pass() -> None:
    host = make_host()
    record = host.records["{dist}"]
    assert record.status == "ok", record.reason
    assert record.components == {{"pass": [plugin.PASS_NAME]}}
    assert host.resolve("pass", plugin.PASS_NAME).dist == "{dist}"


def test_pass_removes_identity_and_keeps_the_numbers() -> None:
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(4, 8)
    expected = model(x)
    gm = fx.symbolic_trace(model)
    graph_pass = make_host().create("pass", plugin.PASS_NAME)
    out, report = graph_pass.run(gm, (x,))
    assert report.changes == ["removed 1 nn.Identity call(s)"]
    assert [n.target for n in out.graph.nodes if n.op == "call_module"] == ["a", "b"]
    assert torch.equal(out(x), expected)


def test_pass_leaves_a_graph_without_identity_alone() -> None:
    gm = fx.symbolic_trace(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    out, report = make_host().create("pass", plugin.PASS_NAME).run(gm, ())
    assert out is None and report.status == "no-op"


def test_step_end_callback_adds_the_loss_average() -> None:
    host = make_host()
    impls = host.hook.deepseek_train_step_end.get_hookimpls()
    assert any(impl.plugin is plugin for impl in impls)
    trainer = object()
    first, second = {{"loss": 2.0}}, {{"loss": 1.0}}
    plugin.deepseek_train_step_end(trainer=trainer, step=1, metrics=first)
    plugin.deepseek_train_step_end(trainer=trainer, step=2, metrics=second)
    assert first["{short}.loss_ema"] == 2.0
    assert second["{short}.loss_ema"] == pytest.approx(1.9)
'''

_TEMPLATES: dict[str, str] = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "src/{pkg}/__init__.py": _INIT,
    "src/{pkg}/plugin.py": _PLUGIN,
    "src/{pkg}/passes.py": _PASSES,
    "tests/test_{pkg}.py": _TEST,
}
