"""Every hook as the framework calls it: commands, config validation and the training lifecycle
with the real trainer (a tiny GPT on CPU), through a throwaway plugin that records its calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plugin_testing import DistFactory, run_cli

from deepseek.errors import ConfigError
from deepseek.plugins import host as host_mod
from deepseek.plugins.settings import PluginSettings

RECORDER = '''
import click
from deepseek import hookimpl
from deepseek.errors import ConfigError

EVENTS = []


@click.command("recorder-hello")
@click.argument("who", default="world")
def hello(who):
    """Say hello from the recorder plugin."""
    click.echo(f"hello {who} from recorder")


@hookimpl
def deepseek_register_commands(register):
    register("recorder-hello", hello)


@hookimpl
def deepseek_validate_config(config):
    if config.train.max_steps == 13:
        raise ConfigError("train.max_steps: the recorder plugin refuses 13; use any other number")


@hookimpl
def deepseek_train_start(trainer):
    EVENTS.append(("start", trainer.step, trainer.is_global_zero))


@hookimpl
def deepseek_train_step_end(trainer, step, metrics):
    EVENTS.append(("step", step, round(metrics["loss"], 6)))
    metrics["recorder.twice_loss"] = 2 * metrics["loss"]


@hookimpl
def deepseek_evaluate(trainer, step, metrics):
    EVENTS.append(("evaluate", step, "val_loss" in metrics))


@hookimpl
def deepseek_checkpoint_saved(trainer, path, step):
    EVENTS.append(("checkpoint", step, (path / "model.safetensors").is_file()))


@hookimpl
def deepseek_train_end(trainer, metrics):
    EVENTS.append(("end", trainer.step, "loss" in metrics))
'''

TINY = {
    "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 2, "max_seq_len": 32},
    "data": {"seq_len": 32, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
    "train": {"max_steps": 4, "warmup_steps": 1, "eval_interval": 2},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 2, "keep_last": 1},
    "logging": {"progress": False, "plot": False},
}


@pytest.fixture
def recorder(make_dist: DistFactory) -> DistFactory:
    make_dist("deepseek-recorder", {"recorder_plugin": RECORDER})
    host_mod.configure(PluginSettings(allow=frozenset({"deepseek-recorder"})))
    return make_dist


def _config(tmp_path: Path, **train: int):  # noqa: ANN202 - deepseek.config.schema.Config
    from deepseek.config.load import config_from_dict

    data = {**TINY, "train": {**TINY["train"], **train}, "logging": {**TINY["logging"], "runs_dir": str(tmp_path / "runs")}}
    return config_from_dict(data)


def test_training_calls_the_lifecycle_hooks_in_order(recorder: DistFactory, tmp_path: Path) -> None:
    import recorder_plugin

    from deepseek.training.metrics import read_metrics
    from deepseek.training.trainer import Trainer

    result = Trainer(_config(tmp_path), run_dir=tmp_path / "run", quiet=True).fit()
    events = [e[:2] for e in recorder_plugin.EVENTS]
    assert events == [
        ("start", 0), ("evaluate", 0), ("step", 1), ("step", 2), ("evaluate", 2), ("checkpoint", 2),
        ("step", 3), ("step", 4), ("evaluate", 4), ("checkpoint", 4), ("end", 4),
    ]
    assert all(e[2] is True for e in recorder_plugin.EVENTS if e[0] != "step")
    assert [e[2] for e in recorder_plugin.EVENTS if e[0] == "step"] == [round(x, 6) for x in result.losses]
    steps = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert [r["recorder.twice_loss"] for r in steps] == pytest.approx([2 * r["loss"] for r in steps])


def test_validate_config_hook_rejects_before_anything_runs(recorder: DistFactory, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the recorder plugin refuses 13"):
        _config(tmp_path, max_steps=13)
    assert not (tmp_path / "runs").exists()


def test_registered_command_runs_and_shows_in_help(recorder: DistFactory) -> None:
    env = recorder.env(DEEPSEEK_PLUGINS="recorder")
    proc = run_cli("recorder-hello", "plugins", env=env)
    assert (proc.returncode, proc.stdout) == (0, "hello plugins from recorder\n"), proc.stderr
    help_text = run_cli("--help", env=env).stdout
    assert "recorder-hello  Say hello from the recorder plugin." in help_text
    listing = json.loads(run_cli("plugins", "list", "--json", env=env).stdout)
    assert next(r for r in listing if r["distribution"] == "deepseek-recorder")["components"] == {
        "command": ["recorder-hello"]
    }
