"""A component named in a plugin's namespace (``acme.signsgd``) whose distribution
(``deepseek-acme``) is installed but did not load: the "unknown" line says so and why, instead of
reading as a typo (before: only first-party editions got that note)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
from deepseek.hookspecs import hookimpl
from deepseek.training.optimizers import AdamW

class Signless(AdamW):
    pass

@hookimpl
def deepseek_register_optimizers(register):
    register("acme.signless", "deepseek_acme:Signless", description="adamw under another name")
"""


@pytest.fixture
def acme(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    info = site / "deepseek_acme-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "deepseek_acme.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-acme\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepseek]\nacme = deepseek_acme\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def _show(env: dict[str, str], *flags: str, name: str = "acme.signless") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deepseek", *flags, "config", "show", "--set", f"optimizer.name={name}"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_a_loaded_plugin_component_resolves(acme: dict[str, str]) -> None:
    out = _show(acme)
    assert out.returncode == 0, out.stderr
    assert 'name = "acme.signless"' in out.stdout


@pytest.mark.parametrize(("flags", "why"), [
    (("--disable-plugins", "acme"), "disabled: disabled by DEEPSEEK_DISABLE_PLUGINS / --disable-plugins"),
    (("--no-plugin-autoload",), "disabled: autoload disabled by DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD"),
])
def test_an_unloaded_plugins_component_names_the_distribution(acme: dict[str, str], flags: tuple[str, ...],
                                                               why: str) -> None:
    out = _show(acme, *flags)
    assert out.returncode == 2
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: optimizer.name: unknown optimizer 'acme.signless'; ")
    assert f"; deepseek-acme 0.1 is installed but {why}" in line


def test_other_namespaces_get_no_note(acme: dict[str, str]) -> None:
    out = _show(acme, "--disable-plugins", "acme", name="zeta.signless")
    assert out.returncode == 2
    assert "installed but" not in out.stderr


def test_a_plugin_that_failed_to_load_is_named_whatever_its_names(tmp_path: Path) -> None:
    """A distribution whose names do not follow the namespace (deepseek-widgets registering
    'acme.signless') and whose registration fails: the "unknown" line names it and points to the
    warning that says why (was only "unknown optimizer"; then the failure shown twice)."""
    site = tmp_path / "site"
    info = site / "deepseek_widgets-0.2.dist-info"
    info.mkdir(parents=True)
    (site / "deepseek_widgets.py").write_text(PLUGIN.replace('register("acme.signless"', 'register("acme.signless", 3'))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-widgets\nVersion: 0.2\n")
    (info / "entry_points.txt").write_text("[deepseek]\nwidgets = deepseek_widgets\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = _show(env)
    assert out.returncode == 2
    (line,) = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: optimizer.name: unknown optimizer 'acme.signless'; "), line
    assert line.endswith("; deepseek-widgets 0.2 failed (the warning above says why; so does 'deepseek plugins list'), "
                         "so what it registers is missing"), line
    assert out.stderr.count("deepseek_register_optimizers") == 1, out.stderr  # the failure, shown once: the warning


def test_a_plugin_that_fails_to_import_is_shown_once(acme: dict[str, str], tmp_path: Path) -> None:
    """Its ImportError was shown twice: in the warning when the plugins load, and again whole in
    the "unknown" line; the line now points to the warning."""
    (Path(acme["PYTHONPATH"].split(os.pathsep)[0]) / "deepseek_acme.py").write_text("import acme_missing_module\n")
    out = _show(acme)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: deepseek-acme 0.1: plugin 'acme' (deepseek_acme) failed to "
                                                   "import: ModuleNotFoundError: No module named 'acme_missing_module'")
    assert lines[1] == ("error: optimizer.name: unknown optimizer 'acme.signless'; available: adafactor, adamw, lion, sgd "
                        "(see 'deepseek plugins list'); deepseek-acme 0.1 is installed but failed (the warning above says "
                        "why; so does 'deepseek plugins list')"), lines[1]
    assert out.stderr.count("ModuleNotFoundError") == 1
