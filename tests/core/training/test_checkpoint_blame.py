"""A plugin's code raising while a checkpoint is written (its model's ``state_dict``, its
schedule's ``state_dict`` for ``trainer.json``) is one line naming the distribution, the component
and the call, as its ``forward`` or ``lr_at`` raising is, not the framework's internal error; the
checkpoint being written is not committed, so ``latest`` still names the last complete one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import _bigram
import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.schedule import LRSchedule
from deepseek.training.trainer import Trainer

BROKEN = {"on": False}  # set by the plugin's step-end hook at step 2: the second checkpoint's write fails


class Bigram(_bigram.Bigram):
    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        if BROKEN["on"]:
            raise RuntimeError("acme cannot list its weights")
        return super().state_dict(*args, **kwargs)


class Flat(LRSchedule):
    def lr_at(self, step: int) -> float:
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        if BROKEN["on"]:
            raise RuntimeError("acme cannot describe its schedule")
        return super().state_dict()


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register):  # noqa: ANN001, ANN201
        register("acme.bigram", Bigram, description="a bigram model whose state_dict fails from step 2")

    @hookimpl
    def deepseek_register_lr_schedules(self, register):  # noqa: ANN001, ANN201
        register("acme.flat", Flat, description="a flat schedule whose state_dict fails from step 2")

    @hookimpl
    def deepseek_train_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        BROKEN["on"] = step == 2


@pytest.mark.parametrize(("part", "shown"), [("model", r"model 'acme\.bigram'"),
                                             ("lr_schedule", r"lr_schedule 'acme\.flat'")])
def test_a_plugins_state_dict_failing_in_a_checkpoint_write_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     part: str, shown: str) -> None:
    monkeypatch.setitem(BROKEN, "on", False)
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1.0").status == "ok"
    config = config_from_dict({
        "model": {"name": "acme.bigram"} if part == "model" else {"name": "tiny", "d_model": 8, "n_heads": 2,
                                                                  "n_layers": 1, "max_seq_len": 16},
        **({"lr_schedule": {"name": "acme.flat"}} if part == "lr_schedule" else {}),
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
        "train": {"max_steps": 3, "warmup_steps": 1, "eval_interval": 0},
        "checkpoint": {"interval": 1}, "strategy": {"name": "single", "device": "cpu"},
        "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path / "runs")}}, host=host)
    with pytest.raises(PluginError) as failed:
        Trainer(config, run_dir=tmp_path / "run", quiet=True, host=host).fit()
    message = str(failed.value)
    assert "\n" not in message
    assert re.match(rf"{shown} \(deepseek-acme 0\.1\.0, registered by [^)]+\): state_dict raised RuntimeError: "
                    r"acme cannot (list its weights|describe its schedule); a bug in the plugin", message), message
    root = tmp_path / "run" / "checkpoints"
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["step-1"]
    assert (root / "latest").read_text().strip() == "step-1"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-1"]  # no temp folder of step 2 left
