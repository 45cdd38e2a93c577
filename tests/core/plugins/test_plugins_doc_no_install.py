"""docs/plugins.md section 1, "Trying a plugin without installing it": the page's ``METADATA`` and
``entry_points.txt``, written into ``src/deepseek_acme-0.1.0.dist-info/`` beside the package,
make ``deepseek plugins list`` (and so every command and the contract tests) load the plugin from
``PYTHONPATH`` alone, in an environment nothing was installed into; before, the page only said
``pip install -e``, which a nox session (no pip) or a read-only environment cannot run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from plugin_testing import base_env, run_cli

REPO = Path(__file__).resolve().parents[3]
BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```\w+\n(.*?)\n```", re.S)

PLUGIN = '''
from deepseek import hookimpl


@hookimpl
def deepseek_register_passes(register):
    register("acme.noop", "deepseek_acme.passes:NoOp", description="a pass that changes nothing")
'''


def test_the_pages_dist_info_loads_the_plugin_from_pythonpath(tmp_path: Path) -> None:
    blocks = dict(BLOCK.findall((REPO / "docs" / "plugins.md").read_text(encoding="utf-8")))
    src = tmp_path / "deepseek-acme" / "src"
    (src / "deepseek_acme").mkdir(parents=True)
    (src / "deepseek_acme" / "__init__.py").write_text("")
    (src / "deepseek_acme" / "plugin.py").write_text(PLUGIN)
    info = src / "deepseek_acme-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(blocks["no-install-metadata"] + "\n")
    (info / "entry_points.txt").write_text(blocks["no-install-entry-points"] + "\n")
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = run_cli("plugins", "list", "--json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    records = {r["distribution"]: r for r in json.loads(proc.stdout)}
    acme = records["deepseek-acme"]
    assert (acme["version"], acme["status"]) == ("0.1.0", "ok"), acme
    assert "acme.noop" in json.dumps(acme["components"]), acme
    # The Requires-Dist line is read as an installed plugin's is: a range that excludes core blocks it.
    (info / "METADATA").write_text(blocks["no-install-metadata"].replace(">=0.1.0", ">=0.1.1") + "\n")
    proc = run_cli("plugins", "list", "--json", env=env, cwd=tmp_path)
    blocked = {r["distribution"]: r for r in json.loads(proc.stdout)}["deepseek-acme"]
    assert blocked["status"] == "blocked", blocked
