"""``deepseek train`` checks that the checkpoint writer's libraries import before it creates the
run folder or trains: with ``safetensors`` missing (``pip install --no-deps``), it ran every step,
failed at its first checkpoint save with an internal error and left a run folder behind."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from deepseek import extras
from deepseek.errors import UsageError
from deepseek.plugins.install import installer

BLOCKER = '''
import sys


class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "safetensors":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
'''


def test_train_without_the_checkpoint_writer_stops_before_the_run_folder(tmp_path: Path) -> None:
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(inject), *filter(None, [os.environ.get("PYTHONPATH")])]))
    small = ["--set", "model.d_model=16", "--set", "model.n_heads=2", "--set", "model.n_layers=1",
             "--set", "model.max_seq_len=16", "--set", "data.seq_len=16", "--set", "data.batch_size=2",
             "--set", "data.eval_batches=1", "--set", "strategy.device=\"cpu\"", "--precision", "fp32"]
    proc = subprocess.run([sys.executable, "-m", "deepseek", "train", *small, "--max-steps", "2",
                           "--run-dir", "runs/x", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: train (checkpoints are written with it): safetensors "), lines
    assert "install" in lines[0] and "'safetensors" in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_an_absent_library_gets_the_editions_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    if not extras.declared("deepseek-core"):
        pytest.skip("deepseek-core's metadata is not installed (sources on the path only)")

    def version(name: str) -> str:
        if name == "safetensors":
            raise metadata.PackageNotFoundError(name)
        return metadata.version(name)

    shim = type("M", (), {k: staticmethod(getattr(metadata, k)) for k in ("requires", "metadata")})
    shim.PackageNotFoundError = metadata.PackageNotFoundError
    shim.version = staticmethod(version)
    monkeypatch.setattr(extras, "metadata", shim)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    wanted = extras.declared("deepseek-core")["safetensors"].pip
    with pytest.raises(UsageError) as info:
        extras.check_importable("safetensors.torch", needed_for="train")
    assert str(info.value) == (f"train: safetensors is not installed, but deepseek-core needs {wanted} (an install "
                               f"with --no-deps leaves it out); install it with: {installer()} '{wanted}'")
