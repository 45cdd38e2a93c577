"""``deepseek --plugins ... run SCRIPT.py``: the script's ``deepseek.fit`` and ``deepseek.create_*``
use the process's plugin host, which the root options did not reach (the script saw every
installed plugin under ``--disable-plugins``); they reach it now, as ``deepseek launch`` gives
them to its workers, and the script's environment says them."""

from __future__ import annotations

from pathlib import Path

from plugin_testing import PASS_PLUGIN, DistFactory, run_cli

SCRIPT = """
import os
import deepseek

print(sorted(n for n in deepseek.list_passes() if n.startswith("aa.")))
print(os.environ.get("DEEPSEEK_DISABLE_PLUGINS"), os.environ.get("DEEPSEEK_PLUGINS"))
"""


def test_the_root_plugin_options_reach_the_scripts_plugins(make_dist: DistFactory, tmp_path: Path) -> None:
    make_dist("deepseek-aa", {"aa_plugin": PASS_PLUGIN.format(name="aa.pass", module="aa_plugin")})
    (tmp_path / "s.py").write_text(SCRIPT)
    env = make_dist.env()
    seen = {}
    for options in ((), ("--disable-plugins", "aa"), ("--plugins", "aa")):
        proc = run_cli(*options, "run", "s.py", env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        seen[options] = proc.stdout.splitlines()
    assert seen[()] == ["['aa.pass']", "None None"]
    assert seen[("--disable-plugins", "aa")] == ["[]", "aa None"]
    assert seen[("--plugins", "aa")] == ["['aa.pass']", "None aa"]
