"""The training loop: accumulation, precisions, lifecycle hooks, run folder contents."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from deepseek import hookimpl
from deepseek.config.load import load_config
from deepseek.errors import ConfigError, PluginError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.build import build_model
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer


def _params(result_trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in result_trainer.strategy.unwrapped_model().parameters()]


def test_grad_accumulation_matches_one_big_batch(tiny_config, tmp_path: Path) -> None:
    one = Trainer(tiny_config(train={"max_steps": 3, "grad_accum": 1}), run_dir=tmp_path / "a")
    two = Trainer(tiny_config(train={"max_steps": 3, "grad_accum": 2}), run_dir=tmp_path / "b")
    r1, r2 = one.fit(), two.fit()
    torch.testing.assert_close(torch.tensor(r1.losses), torch.tensor(r2.losses), rtol=1e-5, atol=1e-6)
    for a, b in zip(_params(one), _params(two), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_activation_checkpointing_gives_the_same_losses(tiny_config, tmp_path: Path) -> None:
    plain = Trainer(tiny_config(), run_dir=tmp_path / "a").fit()
    ac = Trainer(tiny_config(train={"activation_checkpointing": True}), run_dir=tmp_path / "b")
    result = ac.fit()
    assert ac.strategy.unwrapped_model().activation_checkpointing is True
    torch.testing.assert_close(torch.tensor(plain.losses), torch.tensor(result.losses), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tiny_config, tmp_path: Path, dtype: str) -> None:
    trainer = Trainer(tiny_config(precision={"dtype": dtype}, train={"max_steps": 6}), run_dir=tmp_path / dtype)
    result = trainer.fit()
    assert all(math.isfinite(x) for x in result.losses)
    assert result.losses[-1] < result.losses[0]
    records = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    if dtype == "fp16":
        assert all("loss_scale" in r for r in records)
    else:
        assert not any("loss_scale" in r for r in records)


def test_fp16_overflow_skips_steps_in_the_loop(tiny_config, tmp_path: Path) -> None:
    # A loss scale of 2**100 overflows fp16 on the first steps; they are skipped, not applied.
    config = tiny_config(precision={"dtype": "fp16", "init_scale": 2.0**100}, train={"max_steps": 1})
    before = [p.detach().clone() for p in build_model(config).parameters()]
    trainer = Trainer(config, run_dir=tmp_path / "r")
    result = trainer.fit()
    (record,) = [r for r in read_metrics(result.run_dir / "metrics.jsonl") if "loss" in r]
    assert record["skipped"] == 1 and record["loss_scale"] == 2.0**99
    for a, b in zip(before, _params(trainer), strict=True):
        assert torch.equal(a, b)


class Recorder:
    """A plugin object implementing every lifecycle hook."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, int | None]] = []
        self.fail_at = fail_at

    @hookimpl
    def deepseek_train_start(self, trainer):
        assert trainer.model is not None and trainer.is_global_zero
        self.calls.append(("start", trainer.step))

    @hookimpl
    def deepseek_train_step_end(self, trainer, step, metrics):
        metrics["plugin_metric"] = step * 10.0  # extending metrics in place is allowed
        self.calls.append(("step", step))
        if step == self.fail_at:
            raise RuntimeError("plugin failure")

    @hookimpl
    def deepseek_evaluate(self, trainer, step, metrics):
        assert "val_loss" in metrics
        self.calls.append(("eval", step))

    @hookimpl
    def deepseek_checkpoint_saved(self, trainer, path, step):
        assert (path / "trainer.json").exists()
        self.calls.append(("ckpt", step))

    @hookimpl
    def deepseek_train_end(self, trainer, metrics):
        self.calls.append(("end", int(metrics.get("step", -1))))


def test_lifecycle_hooks_in_order(tiny_config, tmp_path: Path) -> None:
    recorder = Recorder()
    host = host_for_tests()
    host.register_plugin(recorder, dist="deepseek-recorder")
    config = tiny_config(train={"max_steps": 4, "eval_interval": 2}, checkpoint={"interval": 2})
    run = Trainer(config, run_dir=tmp_path / "run", host=host).fit().run_dir
    assert recorder.calls == [
        ("start", 0), ("eval", 0),
        ("step", 1), ("step", 2), ("eval", 2), ("ckpt", 2),
        ("step", 3), ("step", 4), ("eval", 4), ("ckpt", 4),
        ("end", 4),
    ]
    steps = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert [r["plugin_metric"] for r in steps] == [10.0, 20.0, 30.0, 40.0]


def test_train_end_is_called_when_training_fails(tiny_config, tmp_path: Path) -> None:
    recorder = Recorder(fail_at=2)
    host = host_for_tests()
    host.register_plugin(recorder, dist="deepseek-recorder")
    # the bare exception comes back as one line naming the distribution, the plugin and the hook
    with pytest.raises(
        PluginError,
        match=r"^deepseek-recorder 0\.0\.0: plugin 'Recorder' \([\w.]+:Recorder\) raised in "
        r"deepseek_train_step_end: RuntimeError: plugin failure; a bug in the plugin",
    ) as caught:
        Trainer(tiny_config(), run_dir=tmp_path / "run", host=host).fit()
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert recorder.calls[-1] == ("end", 2)


def test_run_folder_contents(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(train={"max_steps": 3, "eval_interval": 2}, logging={"plot": True})
    result = Trainer(config, run_dir=tmp_path / "run").fit()
    run = result.run_dir
    # .lock: the run-folder lock file (deepseek.training.run_lock), empty of meaning once the run ended
    assert sorted(p.name for p in run.iterdir()) == [".lock", "checkpoints", "config.toml", "loss.png", "metrics.jsonl"]
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_config(run / "config.toml") == config  # the resolved config loads back equal
    records = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in records if "val_loss" in r] == [0, 2, 3]
    step = next(r for r in records if r.get("step") == 3 and "loss" in r)
    assert {"loss", "lr", "grad_norm", "tokens", "tokens_per_s", "step_time", "skipped"} <= set(step)
    assert step["tokens"] == 3 * 8 * 32
    assert result.checkpoint == run / "checkpoints" / "step-3"


def test_default_run_folder_is_a_timestamp_under_runs_dir(tiny_config, tmp_path: Path) -> None:
    first = Trainer(tiny_config(train={"max_steps": 1}), quiet=True).fit().run_dir
    second = Trainer(tiny_config(train={"max_steps": 1}), quiet=True).fit().run_dir
    assert first.parent == second.parent == (tmp_path / "runs").resolve()
    assert first != second  # never reuses a folder


def test_single_device_option_is_validated(tiny_config) -> None:
    with pytest.raises(ConfigError, match="strategy.device"):
        tiny_config(strategy={"name": "single", "device": "gpu"})
    if not torch.cuda.is_available():
        config = tiny_config(strategy={"name": "single", "device": "cuda"})
        with pytest.raises(ConfigError, match="no CUDA device"):
            Trainer(config).fit()


def test_tensorboard_mirror(tiny_config, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run = Trainer(tiny_config(train={"max_steps": 2}, logging={"tensorboard": True}), run_dir=tmp_path / "r").fit().run_dir
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def host_for_tests() -> PluginHost:
    """A fresh host with core's built-ins only, for plugins registered in-process by one test."""
    return PluginHost(PluginSettings(autoload=False))
