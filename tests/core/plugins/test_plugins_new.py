"""``deepseek plugins new NAME``: name validation, no overwrite, and a scaffold whose test passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from plugin_testing import base_env, run_cli

from deepseek.errors import UsageError
from deepseek.plugins.install import installer
from deepseek.plugins.scaffold import scaffold, validate_name


@pytest.mark.parametrize("name", ["Acme", "1acme", "a--b", "a_b", "acme-", "", "x" * 41, "core", "deepseek-pro"])
def test_invalid_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^plugins new: "):
        scaffold(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "short"), [("acme", "acme"), ("deepseek-acme", "acme"), ("my-passes2", "my-passes2")])
def test_valid_names(name: str, short: str) -> None:
    assert validate_name(name) == short


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "deepseek-acme"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    with pytest.raises(UsageError, match="already exists; nothing was written"):
        scaffold("acme", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["deepseek-acme"]  # no temp folder left
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]


def test_cli_new_and_its_errors(tmp_path: Path) -> None:
    proc = run_cli("plugins", "new", "acme", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"created {tmp_path / 'deepseek-acme'}/" in proc.stdout
    assert f"{installer()} -e {tmp_path / 'deepseek-acme'}" in proc.stdout  # works here, pip or uv
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "deepseek-acme/README.md",
        "deepseek-acme/pyproject.toml",
        "deepseek-acme/src/deepseek_acme/__init__.py",
        "deepseek-acme/src/deepseek_acme/passes.py",
        "deepseek-acme/src/deepseek_acme/plugin.py",
        "deepseek-acme/tests/test_deepseek_acme.py",
    ]
    again = run_cli("plugins", "new", "acme", "--dir", str(tmp_path))
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    bad = run_cli("plugins", "new", "Bad_Name", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: plugins new: invalid plugin name 'Bad_Name'")


def _install_by_hand(project: Path, site: Path) -> None:
    """What ``pip install -e`` leaves for importlib.metadata: a dist-info from pyproject.toml."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {meta['name']}", f"Version: {meta['version']}"]
    lines += [f"Requires-Dist: {r}" for r in meta["dependencies"]]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    groups = meta["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items())
    )


def _gpt_weights(path: Path) -> Path:
    """A trained-model weights file of core's tiny GPT preset, as ``deepseek optimize`` reads it."""
    import torch

    import deepseek
    from deepseek.training.checkpoint import save_model_state

    torch.manual_seed(0)
    model = deepseek.create_model("tiny")
    save_model_state(path, model.state_dict(), {"format": "deepseek-weights", "model": json.dumps({"preset": "tiny"})})
    return path


def test_generated_plugin_installs_and_its_own_test_passes(tmp_path: Path) -> None:
    project, _ = scaffold("acme", tmp_path)
    site = tmp_path / "site"
    _install_by_hand(project, site)
    env = base_env(PYTHONPATH=os.pathsep.join([str(site), str(project / "src")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
    listing = run_cli("plugins", "list", "--json", env=env)
    record = next(r for r in json.loads(listing.stdout) if r["distribution"] == "deepseek-acme")
    assert (record["status"], record["edition"], record["components"]) == (
        "ok", "third-party", {"pass": ["acme.inline-linear"]},
    )
    which = run_cli("plugins", "which", "pass", "acme.inline-linear", env=env)
    assert "deepseek_acme.passes:InlineLinear" in which.stdout
    # The generated pass fires in `deepseek optimize` on a GPT checkpoint and keeps the numbers.
    weights = _gpt_weights(tmp_path / "weights.safetensors")
    optimized = run_cli("optimize", "--checkpoint", str(weights), "--seq", "16", "--json",
                        "--passes", "acme.inline-linear", env=env)
    assert optimized.returncode == 0, optimized.stderr
    plan = json.loads(optimized.stdout)
    assert plan["capture"] == "fx.symbolic_trace" and plan["pipeline"] == ["acme.inline-linear", "fx"]
    (report,) = plan["passes"]
    assert (report["status"], report["changes"]) == ("applied", ["inlined 17 nn.Linear call(s) as F.linear"])
    assert plan["max_rel_error"] == 0.0


def test_a_name_whose_distribution_is_installed_gets_a_warning(tmp_path) -> None:  # noqa: ANN001
    """Installing the scaffold of 'deepseek-NAME' replaces an installed 'deepseek-NAME' (was silent)."""
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    info = site / "deepseek_clashy-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: deepseek-clashy\nVersion: 0.3\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "deepseek", "plugins", "new", "clashy", "--dir", str(tmp_path / "w")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[0] == ("warning: a distribution deepseek-clashy 0.3 is installed already; installing "
                                          "this scaffold replaces it (pick another name to keep both)")
    assert (tmp_path / "w" / "deepseek-clashy" / "pyproject.toml").is_file()
