"""The contract suite (tests/contract, docs/plugins.md section 9) never loads a component while it
is collected: a plugin component whose lazy ``module:attr`` target does not load fails its own
tests, and every other test of the suite still runs (before, ``test_models_contract.py`` loaded
every model at import to pick the GPT family, and one broken target stopped the whole suite with
"Interrupted: 1 error during collection")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]

PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_models(register):
    register("acme.broken", "deepseek_acme.missing:Model", description="a target that does not load")

@hookimpl
def deepseek_register_strategies(register):
    register("acme.gone", "deepseek_acme:Gone", description="a target that does not load")

@hookimpl
def deepseek_register_optimizers(register):
    register("acme.adamw", "deepseek.training.optimizers:AdamW", description="adamw under another name")
"""


def test_a_component_that_does_not_load_fails_its_own_contract_tests_only(make_dist: DistFactory,
                                                                          tmp_path: Path) -> None:
    make_dist("deepseek-acme", {"deepseek_acme": PLUGIN})
    contract = REPO / "tests" / "contract"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "--basetemp", str(tmp_path / "pt"),
         str(contract / "test_registry_contract.py"), str(contract / "test_models_contract.py"),
         str(contract / "test_launcher_strategies_contract.py"),
         "-k", "deepseek-acme or test_core_models_registered or third_party_launcher"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-acme", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    assert "error during collection" not in out and "Interrupted" not in out, out[-3000:]
    failed = set(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed, out[-3000:]
    assert all("acme.broken" in t or "acme.gone" in t for t in failed), failed  # only the broken two's own tests
    assert {"test_component_resolves_loads_and_is_described[model:deepseek-acme:acme.broken]",
            "test_component_resolves_loads_and_is_described[strategy:deepseek-acme:acme.gone]",
            "test_options_and_meta_build[deepseek-acme:acme.broken]",
            "test_two_processes_train_like_single[deepseek-acme:acme.gone]"} <= failed, failed
    summary = out.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))  # the plugin's good optimizer and core's models
    assert passed >= 2 and proc.returncode == 1, summary
