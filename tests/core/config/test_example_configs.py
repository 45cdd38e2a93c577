"""The example configs under examples/configs: each loads (the ones needing deepseek-pro name its
install command when it is missing; tests/pro loads them with it), and the small ones train."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek.cli.main import main
from deepseek.config.load import load_config
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples" / "configs").glob("*.toml"))
NEEDS_PRO = {"fsdp-2gpu.toml"}
TRAINED_HERE = {"quick-cpu.toml", "own-text.toml"}
"""Small enough to train a few steps in a test (the others are for a GPU)."""


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # own-text.toml reads docs/ of the repository


def test_the_examples_are_all_here() -> None:
    assert {p.name for p in EXAMPLES} >= NEEDS_PRO | TRAINED_HERE | {"small-gpu.toml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_loads(path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    if path.name in NEEDS_PRO:
        with pytest.raises(ConfigError, match="provided by deepseek-pro"):
            load_config(path, host=host)
        return
    config = load_config(path, host=host)
    assert config.train.max_steps >= 100


@pytest.mark.parametrize("name", sorted(TRAINED_HERE))
def test_small_example_trains(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    threads = torch.get_num_threads()
    argv = ["train", f"examples/configs/{name}", "--max-steps", "2", "--run-dir", str(tmp_path / "run"),
            "--set", "train.eval_interval=0", "--set", "data.eval_batches=1", "--set", "logging.plot=false", "--quiet"]
    try:
        with pytest.raises(SystemExit) as done:
            main(argv, host=PluginHost(PluginSettings(autoload=False)))
    finally:
        torch.set_num_threads(threads)
    assert done.value.code == 0, capsys.readouterr().err
    assert "2 steps" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "step-2" / "model.safetensors").is_file()

