"""``deepseek.create_pass`` / ``create_strategy`` / ``registry.create_component`` / ``create_dataset`` /
``create_lr_schedule`` / ``create_tracker`` from Python: what a plugin's class or factory raises
while it is created is one line naming the component and its distribution (a ``PluginError``),
as in the CLI and ``deepseek.optimize`` (was the plugin's bare ``KeyError``); a wrong argument of
the caller, raised by no line of the plugin, passes as it is."""

from __future__ import annotations

import json
import subprocess
import sys

from plugin_testing import DistFactory

BROKEN = """
from deepseek import hookimpl
from deepseek.data.dataset import Dataset
from deepseek.graph.passes import GraphPass
from deepseek.tracking import Tracker
from deepseek.training.schedule import LRSchedule
from deepseek.training.single import SingleDeviceStrategy


class BrokenPass(GraphPass):
    name = "broken"

    def __init__(self):
        raise KeyError("pass table")


def broken_factory():
    return {}["factory"]


class BrokenStrategy(SingleDeviceStrategy):
    def __init__(self, *args, **kwargs):
        raise ValueError("strategy state")


class BrokenData(Dataset):
    def __init__(self, options, *, batch_size, seed):
        raise IndexError("data rows")

    __next__ = validation_batches = state_dict = load_state_dict = None


class BrokenSchedule(LRSchedule):
    def __init__(self, options=None, **numbers):
        raise ZeroDivisionError("schedule")


class BrokenTracker(Tracker):
    def __init__(self, options=None):
        raise AttributeError("tracker client")


@hookimpl
def deepseek_register_passes(register):
    register("broken", BrokenPass, description="raises in __init__")
    register("broken.factory", broken_factory, description="its factory raises")


@hookimpl
def deepseek_register_strategies(register):
    register("broken", BrokenStrategy, description="raises in __init__")


@hookimpl
def deepseek_register_datasets(register):
    register("broken", BrokenData, description="raises in __init__")


@hookimpl
def deepseek_register_lr_schedules(register):
    register("broken", BrokenSchedule, description="raises in __init__")


@hookimpl
def deepseek_register_trackers(register):
    register("broken", BrokenTracker, description="raises in __init__")
"""

CALLS = """
import json, deepseek
from deepseek.plugins.registry import create_component
calls = {
    "pass": lambda: deepseek.create_pass("broken"),
    "factory": lambda: deepseek.create_pass("broken.factory"),
    "strategy": lambda: deepseek.create_strategy("broken"),
    "component": lambda: create_component("pass", "broken"),
    "dataset": lambda: deepseek.create_dataset("broken", batch_size=2),
    "schedule": lambda: deepseek.create_lr_schedule("broken", lr=1.0, decay_steps=2),
    "tracker": lambda: deepseek.create_tracker("broken"),
    "wrong argument": lambda: deepseek.create_pass("broken", 3),
}
out = {}
for what, call in calls.items():
    try:
        call()
    except Exception as exc:
        out[what] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


def test_what_a_plugin_raises_while_created_names_it(make_dist: DistFactory) -> None:
    make_dist("deepseek-broken", {"deepseek_broken": BROKEN})
    done = subprocess.run([sys.executable, "-c", CALLS], capture_output=True, text=True, env=make_dist.env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    where = "(deepseek-broken 0.1.0, registered by deepseek_broken): __init__ raised"
    advice = "; a bug in the plugin: upgrade it or report it to its authors (its __cause__ holds the original traceback)"
    assert out.pop("wrong argument") == ["TypeError", "BrokenPass.__init__() takes 1 positional argument but 2 "
                                         "were given"]
    assert out == {
        "pass": ["PluginError", f"pass 'broken' {where} KeyError: 'pass table'{advice}"],
        "factory": ["PluginError", f"pass 'broken.factory' {where} KeyError: 'factory'{advice}"],
        "strategy": ["PluginError", f"strategy 'broken' {where} ValueError: strategy state{advice}"],
        "component": ["PluginError", f"pass 'broken' {where} KeyError: 'pass table'{advice}"],
        "dataset": ["PluginError", f"dataset 'broken' {where} IndexError: data rows{advice}"],
        "schedule": ["PluginError", f"lr_schedule 'broken' {where} ZeroDivisionError: schedule{advice}"],
        "tracker": ["PluginError", f"tracker 'broken' {where} AttributeError: tracker client{advice}"],
    }
