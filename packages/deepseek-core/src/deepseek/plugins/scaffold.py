"""``deepseek plugins new NAME``: scaffold a third-party plugin distribution whose test passes."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from deepseek import durable
from deepseek._version import __version__
from deepseek.errors import UsageError
from deepseek.paths import check_output, make_folders, usual_mode

if TYPE_CHECKING:
    from deepseek.plugins.host import PluginHost

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*\Z")  # not $: it let "acme\n" past
RESERVED = frozenset({"core", "pro", "enterprise"})
"""Names of the first-party editions, which a third-party plugin cannot take."""


def validate_name(name: str) -> str:
    """The plugin's short name (``acme`` from ``acme`` or ``deepseek-acme``); UsageError if bad."""
    short = name.removeprefix("deepseek-")  # not stripped: "acme\n" was taken as "acme"
    if not _NAME_RE.match(short) or len(short) > 40:
        around = " (it begins or ends with a space or a control character)" if name != name.strip() else ""
        raise UsageError(
            f"plugins new: invalid plugin name {name!r}{around}; use lower-case letters and digits, "
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
        "pass_name": f"{short}.inline-linear",
        "core_req": _core_requirement(),
    }
    return {
        path.format(**values): text.format(**values)
        for path, text in _TEMPLATES.items()
    }


def scaffold(name: str, parent: Path | str = ".", *, host: PluginHost | None = None) -> tuple[Path, list[Path]]:
    """Write ``deepseek-NAME/`` under ``parent`` (all files or none; ``parent`` and its missing
    parents are created); return its path and the folders created for ``parent``. ``host``: the
    command's, whose plugins' run files ``parent`` may not take (``None``: core's only)."""
    short = validate_name(name)
    parent = Path(parent)
    missing = check_output(parent, where="plugins new: --dir", folder=True, host=host)
    target = parent / f"deepseek-{short}"
    if target.exists():
        raise UsageError(
            f"plugins new: {target} already exists; nothing was written (choose another name "
            "or --dir)"
        )
    make_folders(missing, where="plugins new: --dir")
    tmp = Path(tempfile.mkdtemp(prefix=f".deepseek-{short}-", dir=parent))
    try:
        usual_mode(tmp, folder=True)
        for rel, text in render(short).items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if target.exists():  # created meanwhile: never replace someone's files
            raise UsageError(f"plugins new: {target} already exists; nothing was written")
        durable.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, missing


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

- graph pass `{pass_name}`: calls `nn.Linear` layers as `F.linear` on their own parameters
  (identical numbers, less call overhead); it fires on the GPT presets in `deepseek optimize`;
- training callback: adds `{short}.loss_ema` (moving average of the loss) to every step's metrics;
  a resumed run continues it (it is kept beside the run, `{short}-loss-ema.jsonl`, a file the
  plugin declares, so no command's output replaces it).

```bash
pip install -e ./{dist}
pytest {dist}
deepseek plugins list            # shows {dist} and its pass
deepseek plugins which pass {pass_name}
deepseek optimize --checkpoint RUN --passes {pass_name}   # the pass alone: status "applied"
deepseek optimize --checkpoint RUN                        # auto tries it, keeps it if faster
```

See the graph-pass guide (docs/graph-passes.md), the plugin authoring guide (docs/plugins.md)
and the hook reference (docs/hooks.md).
"""

_INIT = '''\
"""{dist}: a plugin for the DeepSeek framework."""

__version__ = "0.1.0"
'''

_PLUGIN = '''\
"""The module named by the ``deepseek`` entry point of {dist}.

Keep it cheap to import (no torch here): the pass is registered as a lazy ``module:attribute``
target, imported only when someone creates it, so ``deepseek --help`` stays fast.

The training callback keeps its moving average with each checkpoint (a file of the run folder),
so that a resumed run, a new process, continues it as an uninterrupted run would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepseek import hookimpl
from deepseek.errors import UsageError
from deepseek.hookspecs import RegisterFn
from deepseek.parsing import read_text

PASS_NAME = "{pass_name}"
STATE_FILE = "{short}-loss-ema.jsonl"
_loss_ema: dict[int, float | None] = {{}}


@hookimpl
def deepseek_register_passes(register: RegisterFn) -> None:
    """Register the graph pass of this plugin."""
    register(
        PASS_NAME,
        "{pkg}.passes:InlineLinear",
        description="call nn.Linear layers as F.linear on their own parameters",
    )


@hookimpl
def deepseek_declare_run_files(declare: Any) -> None:
    """The callback's file in the run folder: the run's own, so no command's output replaces it."""
    declare([STATE_FILE])


@hookimpl
def deepseek_train_start(trainer: Any) -> None:
    """Start the average afresh or, in a resumed run, from its value at the checkpoint's step."""
    rows = _saved_rows(trainer.run_dir / STATE_FILE) if trainer.step else []
    _loss_ema[id(trainer)] = next((r["ema"] for r in map(json.loads, rows) if r["step"] == trainer.step), None)


def _saved_rows(saved: Path) -> list[str]:
    """The lines of the callback's file (none when there is none), read once through
    deepseek.parsing.read_text: a regular file of at most 16 MiB, so a FIFO or a huge file in its
    place is one line (exit 2), never waited on or read whole."""
    try:
        return read_text(saved).splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"{{saved}}: cannot be read ({{reason}}); put back the file {dist} wrote there, or "
                         "remove it to start the average afresh") from None


@hookimpl
def deepseek_train_step_end(trainer: Any, step: int, metrics: dict[str, float]) -> None:
    """Add an exponential moving average of the loss to the step's metrics."""
    if "loss" not in metrics:
        return
    loss = float(metrics["loss"])
    previous = _loss_ema.get(id(trainer))
    value = loss if previous is None else 0.9 * previous + 0.1 * loss
    _loss_ema[id(trainer)] = value
    metrics["{short}.loss_ema"] = value


@hookimpl
def deepseek_checkpoint_saved(trainer: Any, path: Any, step: int) -> None:
    """Keep the average of this step beside the run (rank 0 writes; every rank reads it back)."""
    if trainer.is_global_zero:
        with (trainer.run_dir / STATE_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps({{"step": step, "ema": _loss_ema.get(id(trainer))}}) + "\\n")


@hookimpl
def deepseek_train_end(trainer: Any, metrics: dict[str, Any]) -> None:
    """Forget the run's average."""
    _loss_ema.pop(id(trainer), None)
'''

_PASSES = '''\
"""The graph pass of {dist} (imports torch; loaded only when the pass is created)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from deepseek.graph.match import match_linear
from deepseek.graph.passes import GraphPass, finish, replace_node
from torch import fx


class InlineLinear(GraphPass):
    """Call ``nn.Linear`` layers as ``F.linear`` on their own parameters.

    The numbers are identical (``nn.Linear.forward`` is that very call) and each layer skips
    ``nn.Module.__call__``'s bookkeeping. ``match_linear`` recognises a linear layer in every
    form the optimizer captures. In the module form (``fx.symbolic_trace``, which every GPT
    preset gets) an ``nn.Linear`` is a ``call_module`` node: this pass replaces it. In the aten
    form (``torch.export``) linear layers already are function calls: the pass does not fire.
    """

    name = "{pass_name}"
    description = "call nn.Linear layers as F.linear on their own parameters"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule | None:
        """Rewrite ``gm``; return it, or ``None`` when there was nothing to inline."""
        inlined = 0
        for node in list(gm.graph.nodes):
            linear = match_linear(gm, node)
            if linear is None or node.op != "call_module":
                continue
            with gm.graph.inserting_before(node):
                weight = gm.graph.get_attr(linear.weight_attr)
                bias = None if linear.bias_attr is None else gm.graph.get_attr(linear.bias_attr)
            replace_node(gm, node, F.linear, (linear.input, weight, bias))
            inlined += 1
        if not inlined:
            return None
        self.record(f"inlined {{inlined}} nn.Linear call(s) as F.linear")
        return finish(gm)
'''

_TEST = '''\
"""Tests of {dist}: ``pip install -e ./{dist} && pytest {dist}``."""

from __future__ import annotations

import deepseek
import pytest
import torch
from deepseek.graph.capture import capture
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from torch import nn

from {pkg} import plugin


def make_host() -> PluginHost:
    """A host with core's built-ins and this plugin only, whatever else is installed."""
    return PluginHost(PluginSettings(allow=frozenset({{"{dist}"}})))


def tiny_gpt() -> tuple[nn.Module, torch.Tensor]:
    """Core's tiny GPT preset (4 blocks of 4 Linear layers, plus the head) and token ids."""
    torch.manual_seed(0)
    return deepseek.create_model("tiny").eval(), torch.randint(0, 256, (2, 32))


def test_plugin_is_discovered_and_registers_its_pass() -> None:
    host = make_host()
    record = host.records["{dist}"]
    assert record.status == "ok", record.reason
    assert plugin.PASS_NAME in record.components.get("pass", []), record.components  # and what you add beside it
    assert host.resolve("pass", plugin.PASS_NAME).dist == "{dist}"
    assert record.run_files == [plugin.STATE_FILE]  # the callback's file: no command's output replaces it


def test_pass_fires_in_the_optimizer_on_a_gpt() -> None:
    model, x = tiny_gpt()
    graph_pass = make_host().create("pass", plugin.PASS_NAME)
    optimized = deepseek.optimize(model, x, passes=[graph_pass], cache=False)
    report = next(r for r in optimized.plan.passes if r.name == plugin.PASS_NAME)
    assert report.status == "applied", report
    assert report.changes == ["inlined 17 nn.Linear call(s) as F.linear"]
    with torch.no_grad():
        assert torch.equal(optimized(x), model(x))


def test_pass_rewrites_the_graph_the_optimizer_captures() -> None:
    model, x = tiny_gpt()
    gm, method = capture(model, (x,))
    assert method == "fx.symbolic_trace"  # the module form: each nn.Linear is a call_module node
    out, report = make_host().create("pass", plugin.PASS_NAME).run(gm, (x,))
    assert report.status == "applied"
    modules = [type(out.get_submodule(n.target)) for n in out.graph.nodes if n.op == "call_module"]
    assert nn.Linear not in modules
    with torch.no_grad():
        assert torch.equal(out(x), model(x))


class ShapeBranch(nn.Module):
    """Python control flow on a shape: symbolic tracing fails, so the capture uses torch.export."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) if x.shape[0] > 1 else x


def test_in_the_aten_form_linear_layers_already_are_functions() -> None:
    x = torch.randn(4, 8)
    gm, method = capture(ShapeBranch().eval(), (x,))
    assert method == "torch.export"
    out, report = make_host().create("pass", plugin.PASS_NAME).run(gm, (x,))
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


def test_a_resumed_run_continues_the_loss_average(tmp_path) -> None:  # noqa: ANN001
    from types import SimpleNamespace

    trainer = SimpleNamespace(run_dir=tmp_path, is_global_zero=True, step=0)
    plugin.deepseek_train_start(trainer=trainer)
    for step, loss in ((1, 2.0), (2, 1.0)):
        plugin.deepseek_train_step_end(trainer=trainer, step=step, metrics={{"loss": loss}})
    plugin.deepseek_checkpoint_saved(trainer=trainer, path=tmp_path, step=2)
    resumed = SimpleNamespace(run_dir=tmp_path, is_global_zero=True, step=2)  # a new process, from step 2
    plugin.deepseek_train_start(trainer=resumed)
    third = {{"loss": 0.0}}
    plugin.deepseek_train_step_end(trainer=resumed, step=3, metrics=third)
    assert third["{short}.loss_ema"] == pytest.approx(0.9 * 1.9)
'''

_TEMPLATES: dict[str, str] = {
    "pyproject.toml": _PYPROJECT,
    "README.md": _README,
    "src/{pkg}/__init__.py": _INIT,
    "src/{pkg}/plugin.py": _PLUGIN,
    "src/{pkg}/passes.py": _PASSES,
    "tests/test_{pkg}.py": _TEST,
}
