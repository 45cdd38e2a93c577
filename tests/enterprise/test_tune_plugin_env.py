"""A trial's child loads the plugins of the ``deepseek tune`` that started it: the command's root
options (``--disable-plugins``, ``--plugins``, ``--strict-plugins``) reach it as ``DEEPSEEK_*``
variables, as ``deepseek launch`` hands its own to its workers. Before, the child read only the
environment: ``deepseek --disable-plugins X tune`` still ran X's callbacks in every trial (found by
an outside plugin whose training callbacks ran in a study that disabled it), and here, with strict
plugins in the environment, a broken plugin the command had disabled failed every trial."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _tune_common import DEEPSEEK, trials, write

from deepseek_enterprise.tune.process import plugin_env, run_child

SPACE = """
[space]
"train.lr" = { choices = [0.003, 0.001] }
[tuner]
poll_s = 0.2
"""


def broken_plugin(folder: Path) -> Path:
    """deepseek-broken 0.1.0: a distribution whose entry-point module raises on import."""
    site = folder / "site"
    (site / "deepseek_broken").mkdir(parents=True)
    (site / "deepseek_broken" / "__init__.py").write_text("")
    (site / "deepseek_broken" / "plugin.py").write_text("raise RuntimeError('broken on purpose')\n")
    info = site / "deepseek_broken-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-broken\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[deepseek]\nbroken = deepseek_broken.plugin\n")
    return site


def test_trials_load_the_plugins_the_tune_command_chose(tmp_path: Path) -> None:
    write(tmp_path, steps=4, space=SPACE)
    site = broken_plugin(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPSEEK_STRICT_PLUGINS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([*DEEPSEEK, "--disable-plugins", "deepseek-broken", "tune", "base.toml", "--study", "p",
                          "--space", "space.toml", "--trials", "1", "--out", "st"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = trials(tmp_path / "st")
    assert [r["state"] for r in rows] == ["complete"], rows


def test_run_child_sets_and_unsets_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import os; print(os.environ.get('DEEPSEEK_PLUGINS'), os.environ.get('DEEPSEEK_DISABLE_PLUGINS'))"
    monkeypatch.setenv("DEEPSEEK_PLUGINS", "deepseek-pro")  # the process's own value (or none) put back after
    exit_code, stopped = run_child(["python", "-c", code], tmp_path / "log",
                                   env={"DEEPSEEK_PLUGINS": None, "DEEPSEEK_DISABLE_PLUGINS": "deepseek-x"})
    assert (exit_code, stopped) == (0, False)
    assert (tmp_path / "log").read_text().split() == ["None", "deepseek-x"]
    assert plugin_env(None) == {}


def test_the_docs_say_so() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    tune = " ".join((docs / "tune.md").read_text(encoding="utf-8").split())
    assert "pass `env=plugin_env(self.host)` (same module) so that the child loads the plugins" in tune
    assert 'Trainer(trial.config, run_dir=trial.folder / "run", host=self.host)' in tune
    plugins = " ".join((docs / "plugins.md").read_text(encoding="utf-8").split())
    assert "Given before `tune` (`deepseek --disable-plugins acme tune ...`) they choose the plugins" in plugins
