"""The lifecycle hooks' contract (tests/contract/test_lifecycle_hooks_contract.py, docs/plugins.md
sections 6 and 9) fails a distribution whose hooks break a run, its resume or the error that ends
a failing run, naming the distribution in the test id, and passes one whose hooks keep the rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]

PLUGINS = {
    "deepseek-good": """
from deepseek import hookimpl

_seen = {}

@hookimpl
def deepseek_train_start(trainer):
    _seen[id(trainer)] = trainer.step            # the step a resumed run continues from

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    metrics["good_loss_x2"] = 2 * metrics["loss"]
    trainer.should_stop = False

@hookimpl
def deepseek_evaluate(trainer, step, metrics):
    metrics["val_good"] = 1.0

@hookimpl
def deepseek_checkpoint_saved(trainer, path, step):
    if trainer.is_global_zero:
        (trainer.run_dir / "good.txt").write_text(str(step))

@hookimpl
def deepseek_train_end(trainer, metrics):
    _seen.pop(id(trainer), None)
""",
    "deepseek-stringstop": """
from deepseek import hookimpl

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    trainer.should_stop = "no"                   # truthy: read as a stop before the check
""",
    "deepseek-endbug": """
from deepseek import hookimpl

@hookimpl
def deepseek_train_end(trainer, metrics):
    print(trainer.last_checkpoint.name)          # None when the run failed before a checkpoint
""",
    "deepseek-memory": """
from deepseek import hookimpl

_count = {}

@hookimpl
def deepseek_train_start(trainer):
    _count[id(trainer)] = 0                      # assumes a fresh run

@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    _count[id(trainer)] += 1
    if _count[id(trainer)] != step:
        raise ValueError(f"counted {_count[id(trainer)]} steps, the trainer is at {step}")
""",
    "deepseek-epochbug": """
from deepseek import hookimpl

@hookimpl
def deepseek_train_epoch_end(trainer, epoch, step):
    return {"epoch": epoch}                      # a value nobody reads
""",
    "deepseek-returns": """
from deepseek import hookimpl

@hookimpl
def deepseek_train_start(trainer):
    return "started"
""",
}


def test_broken_lifecycle_hooks_fail_the_contract(make_dist: DistFactory, tmp_path: Path) -> None:
    for dist, source in PLUGINS.items():
        module = dist.replace("-", "_")
        make_dist(dist, {f"{module}.plugin": source}, entry_points={dist.removeprefix("deepseek-"): f"{module}.plugin"})
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_lifecycle_hooks_contract.py")],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env=make_dist.env(DEEPSEEK_PLUGINS=",".join(PLUGINS), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    failed = sorted(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed == [
        "test_a_failing_run_ends_with_its_own_error[deepseek-endbug:lifecycle]",
        "test_a_failing_run_ends_with_its_own_error[deepseek-returns:lifecycle]",
        "test_a_failing_run_ends_with_its_own_error[deepseek-stringstop:lifecycle]",
        "test_hooks_through_a_run_and_its_resume[deepseek-epochbug:lifecycle]",
        "test_hooks_through_a_run_and_its_resume[deepseek-memory:lifecycle]",
        "test_hooks_through_a_run_and_its_resume[deepseek-returns:lifecycle]",
        "test_hooks_through_a_run_and_its_resume[deepseek-stringstop:lifecycle]",
    ], out[-4000:]
    assert ("deepseek-stringstop 0.1.0: plugin 'stringstop' (deepseek_stringstop.plugin): deepseek_train_step_end: "
            "set trainer.should_stop to 'no' (str)") in out, out[-4000:]
    assert ("deepseek-memory 0.1.0: plugin 'memory' (deepseek_memory.plugin) raised in deepseek_train_step_end: "
            "ValueError: counted 1 steps, the trainer is at 3") in out, out[-4000:]
    assert ("deepseek-endbug 0.1.0: plugin 'endbug' (deepseek_endbug.plugin) raised in deepseek_train_end: "
            "AttributeError:") in out, out[-4000:]
    assert ("deepseek-epochbug 0.1.0: plugin 'epochbug' (deepseek_epochbug.plugin): deepseek_train_epoch_end: "
            "returned {'epoch': 1} (dict)") in out, out[-4000:]  # the run's first pass ends at step 2
    assert re.search(r"7 failed, 5 passed\b", out), out[-500:]


def test_no_lifecycle_hooks_installed_skips_saying_so(make_dist: DistFactory, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_lifecycle_hooks_contract.py")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    # exit code 5: pytest collected no test (the module skipped as a whole)
    assert "no installed distribution implements a training lifecycle hook" in out and proc.returncode == 5, out[-2000:]


BASE = '''
from deepseek import hookimpl

@hookimpl
def deepseek_add_hookspecs(pluginmanager):
    from deepseek_base import specs
    pluginmanager.add_hookspecs(specs)
'''

BASE_SPECS = '''
from deepseek.hookspecs import hookspec

@hookspec
def base_probe(step):
    """A hook of deepseek-base's own."""
'''

ADDON = '''
from deepseek import hookimpl

@hookimpl
def base_probe(step):
    return step

@hookimpl
def deepseek_train_start(trainer):
    assert trainer.host.hook.base_probe(step=trainer.step) == [trainer.step]
'''


def test_a_plugin_built_on_another_plugins_hookspecs_is_tested_with_it(make_dist: DistFactory, tmp_path: Path) -> None:
    """A distribution implementing hooks a third-party plugin specifies (and requiring it, as
    docs/plugins.md section 7 says) loads only beside it: its lifecycle contract runs on a host
    holding the plugins it requires. Before, that host held core, the editions and the
    distribution only, which refused it ('implements unknown hook'). (Found by an outside plugin,
    acme-deepseek-seven and its probes, written from the docs.)"""
    make_dist("deepseek-base", {"deepseek_base.plugin": BASE, "deepseek_base.specs": BASE_SPECS},
              entry_points={"base": "deepseek_base.plugin"})
    make_dist("deepseek-addon", {"deepseek_addon.plugin": ADDON}, entry_points={"addon": "deepseek_addon.plugin"},
              requires=["deepseek-core>=0.1.0,<0.2", "deepseek-base>=0.1.0"])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", "--basetemp", str(tmp_path / "pt"),
         str(REPO / "tests" / "contract" / "test_lifecycle_hooks_contract.py"),
         "-k", "test_a_failing_run_ends_with_its_own_error and deepseek-addon:"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-base,deepseek-addon", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and re.search(r"\b1 passed\b", out), out[-3000:]
