"""Two installed distributions that register the same pass and model name (the scaffold's
``acme.inline-linear``, say, and a plugin written from docs/plugins.md) each get their own
component tested by the contract suite (tests/contract, docs/plugins.md section 9): the suites look
every component up by its ``dist:name``, so a broken one fails under its own id only and the other's
tests pass. Before, they looked the bare name up, which fails for both with the name-clash error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from plugin_testing import DistFactory

REPO = Path(__file__).resolve().parents[3]

PASSES = """
import torch.nn.functional as F
from deepseek.graph.match import match_linear
from deepseek.graph.passes import GraphPass, finish, replace_node

KEEP_BIAS = {keep_bias}


class InlineLinear(GraphPass):
    name = "acme.inline-linear"
    description = "call nn.Linear layers as F.linear on their own parameters"

    def apply(self, gm, example_inputs):
        inlined = 0
        for node in list(gm.graph.nodes):
            linear = match_linear(gm, node)
            if linear is None or node.op != "call_module":
                continue
            with gm.graph.inserting_before(node):
                weight = gm.graph.get_attr(linear.weight_attr)
                bias = gm.graph.get_attr(linear.bias_attr) if KEEP_BIAS and linear.bias_attr else None
            replace_node(gm, node, F.linear, (linear.input, weight, bias))
            inlined += 1
        if not inlined:
            return None
        self.record(f"inlined {{inlined}} nn.Linear call(s) as F.linear")
        return finish(gm)
"""

PLUGIN = """
from deepseek import hookimpl


@hookimpl
def deepseek_register_passes(register):
    register("acme.inline-linear", "{module}.passes:InlineLinear", description="nn.Linear as F.linear")


@hookimpl
def deepseek_register_models(register):
    register("acme.lm", "deepseek.models.presets:tiny", description="core's tiny GPT under a plugin's name")
"""

DISTS = {"deepseek-alpha": True, "deepseek-beta": False}
"""Each distribution and whether its pass keeps the bias (beta's drops it: wrong numbers)."""


def test_each_distribution_of_a_shared_name_is_tested_on_its_own(make_dist: DistFactory, tmp_path: Path) -> None:
    for dist, keep_bias in DISTS.items():
        module = dist.replace("-", "_")
        make_dist(dist, {f"{module}.plugin": PLUGIN.format(module=module),
                         f"{module}.passes": PASSES.format(keep_bias=keep_bias)},
                  entry_points={dist.removeprefix("deepseek-"): f"{module}.plugin"})
    contract = REPO / "tests" / "contract"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "--basetemp", str(tmp_path / "pt"),
         str(contract / "test_registry_contract.py"), str(contract / "test_passes_contract.py"),
         str(contract / "test_models_contract.py"), "-k", "deepseek-alpha: or deepseek-beta:"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env=make_dist.env(DEEPSEEK_PLUGINS=",".join(DISTS), OMP_NUM_THREADS="1", DS_ACCELERATOR="cpu"))
    out = proc.stdout + proc.stderr
    assert "is registered by both" not in out, out[-4000:]  # no test looked a shared name up bare
    failed = sorted(re.findall(r"^FAILED \S+::(\S+)", out, re.M))
    assert failed == ["test_pass_contract[deepseek-beta:acme.inline-linear-module-form]"], out[-4000:]
    assert re.search(r"deepseek-beta:acme\.inline-linear: max relative error \S+ > ", out), out[-4000:]
    ran = set(re.findall(r"::(\S+\[deepseek-(?:alpha|beta):[^\]]+\]) (?:PASSED|SKIPPED)", out))
    passed = int(re.search(r"(\d+) passed", out.strip().splitlines()[-1]).group(1))
    # per distribution: the registry's 3 (pass, model, the model's written_files), the pass's aten and
    # module forms, the models' 5 non-GPT-only tests (with its pipeline stages' and its cached
    # decoding's) and the GPT family's 4: alpha's 14, beta's 13 (its module form failed)
    assert passed == 27 and proc.returncode == 1, (passed, ran, out[-2000:])
