"""docs/plugins.md section 14's optimizer (``SignSGD``, which keeps no state) and schedule
(``StepDecay``), installed as a plugin exactly as the page shows them, pass the repository's
contract tests the way section 9 tells a plugin author to run them (``-k "deepseek-acme:"``).
The optimizer contract asserted that every optimizer but ``sgd`` keeps some state after two
steps, so the page's own example failed it ("acme.signsgd: no state to check")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```python\n(.*?)\n```", re.S)

PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_register_optimizers(register):
    register("acme.signsgd", "deepseek_acme.optim:SignSGD", description="steps by the gradient's sign")


@hookimpl
def deepseek_register_lr_schedules(register):
    register("acme.step", "deepseek_acme.schedules:StepDecay", description="step decay")
"""


def test_the_pages_optimizer_and_schedule_pass_the_contract_tests(make_dist: DistFactory, tmp_path: Path) -> None:
    blocks = dict(BLOCK.findall((REPO / "docs" / "plugins.md").read_text(encoding="utf-8")))
    make_dist("deepseek-acme", {"deepseek_acme.plugin": PLUGIN, "deepseek_acme.optim": blocks["optimizer-plugin"],
                                "deepseek_acme.schedules": blocks["schedule-plugin"]},
              entry_points={"acme": "deepseek_acme.plugin"})
    contract = REPO / "tests" / "contract"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "--basetemp", str(tmp_path / "pt"),
         str(contract / "test_registry_contract.py"), str(contract / "test_optimizers_contract.py"),
         str(contract / "test_lr_schedules_contract.py"), "-k", "deepseek-acme:"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env=make_dist.env(DEEPSEEK_PLUGINS="deepseek-acme", OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    summary = out.strip().splitlines()[-1]
    assert proc.returncode == 0 and "failed" not in summary, out[-3000:]
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 10, summary  # both components, every contract test
