"""Every hook as the framework calls it: commands, config validation and the training lifecycle
with the real trainer (a tiny GPT on CPU), through a throwaway plugin that records its calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_testing import DistFactory, host_for, run_cli

from deepseek.errors import ConfigError

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
    return make_dist


def _data(tmp_path: Path, **train: int) -> dict:
    return {**TINY, "train": {**TINY["train"], **train}, "logging": {**TINY["logging"], "runs_dir": str(tmp_path / "runs")}}


# The trainer looks components up in the process's host, so the run gets a process whose
# environment loads the recorder.
TRAIN_SCRIPT = """
import json, sys

import recorder_plugin
from deepseek.config.load import config_from_dict
from deepseek.training.trainer import Trainer

result = Trainer(config_from_dict(json.loads(sys.argv[1])), run_dir=sys.argv[2], quiet=True).fit()
print(json.dumps({"events": recorder_plugin.EVENTS, "losses": result.losses}))
"""


def test_training_calls_the_lifecycle_hooks_in_order(recorder: DistFactory, tmp_path: Path) -> None:
    from deepseek.training.metrics import read_metrics

    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, json.dumps(_data(tmp_path)), str(tmp_path / "run")],
        capture_output=True, text=True, env=recorder.env(DEEPSEEK_PLUGINS="deepseek-recorder"), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    events, losses = [tuple(e) for e in answer["events"]], answer["losses"]
    assert [e[:2] for e in events] == [
        ("start", 0), ("evaluate", 0), ("step", 1), ("step", 2), ("evaluate", 2), ("checkpoint", 2),
        ("step", 3), ("step", 4), ("evaluate", 4), ("checkpoint", 4), ("end", 4),
    ]
    assert all(e[2] is True for e in events if e[0] != "step")
    assert [e[2] for e in events if e[0] == "step"] == [round(x, 6) for x in losses]
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert [r["recorder.twice_loss"] for r in steps] == pytest.approx([2 * r["loss"] for r in steps])


def test_validate_config_hook_rejects_before_anything_runs(recorder: DistFactory, tmp_path: Path) -> None:
    from deepseek.config.load import config_from_dict

    host = host_for("deepseek-recorder")
    with pytest.raises(ConfigError, match="the recorder plugin refuses 13"):
        config_from_dict(_data(tmp_path, max_steps=13), host=host)
    assert not (tmp_path / "runs").exists()
    assert config_from_dict(_data(tmp_path, max_steps=12), host=host).train.max_steps == 12
    assert config_from_dict(_data(tmp_path, max_steps=13), host=host_for()).train.max_steps == 13  # a host without it


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
