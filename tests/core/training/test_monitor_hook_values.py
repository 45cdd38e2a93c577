"""``train.monitor`` on a value a plugin's ``deepseek_evaluate`` hook adds to each evaluation (what a
Lightning callback logs and ``ModelCheckpoint(monitor=...)`` follows): best checkpoints and early
stopping follow it; a name neither the model, the data nor any hook reports is refused at the
first evaluation, before a step, and the fresh run's folder is removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training import checkpoint as ckpt
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

SCORES = {0: 1.0, 2: 5.0, 4: 3.0, 6: 2.0, 8: 4.0}
"""The hook's ``val_score`` at each evaluation step: best (max) at step 2."""


class Scorer:
    @hookimpl
    def deepseek_evaluate(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        metrics["val_score"] = SCORES[step]


def _host() -> PluginHost:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Scorer(), dist="deepseek-scorer").status == "ok"
    return host


def _config(host: PluginHost, **train: Any) -> Any:
    return config_from_dict({
        "model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1},
        "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1, "shuffle_buffer": 16},
        "train": {"max_steps": 8, "warmup_steps": 1, "eval_interval": 2, "monitor": "val_score",
                  "monitor_mode": "max", **train},
        "checkpoint": {"keep_best": True, "keep_last": 1},
        "strategy": {"name": "single", "device": "cpu"}, "logging": {"progress": False, "plot": False}}, host=host)


def test_best_checkpoint_follows_a_value_a_hook_adds(tmp_path: Path) -> None:
    host = _host()
    result = Trainer(_config(host), run_dir=tmp_path / "run", host=host).fit()
    root = result.run_dir / "checkpoints"
    assert (root / ckpt.BEST_FILE).read_text().strip() == "step-2"
    assert result.monitor["best"] == 5.0 and result.monitor["best_step"] == 2
    assert "added_by" not in result.monitor  # not saved: it is the run's plugins, not its state
    scores = {r["step"]: r["val_score"] for r in read_metrics(result.run_dir / "metrics.jsonl") if "val_score" in r}
    assert scores == SCORES


def test_early_stopping_on_a_hook_value(tmp_path: Path) -> None:
    host = _host()
    result = Trainer(_config(host, early_stop_patience=2), run_dir=tmp_path / "run", host=host).fit()
    assert result.step == 6 and result.monitor["stale"] == 2  # 4 and 6 do not beat step 2's 5.0


def test_a_name_no_hook_adds_is_refused_at_the_first_evaluation(tmp_path: Path) -> None:
    host = _host()
    with pytest.raises(ConfigError, match=r"^train\.monitor: 'val_scor' is not an evaluation value of this run "
                       r"\(did you mean 'val_score'\?\); it reports val_bits_per_byte, val_loss, val_score "
                       r"\(with what the deepseek_evaluate hooks of deepseek-scorer add\)$"):
        Trainer(_config(host, monitor="val_scor"), run_dir=tmp_path / "run", host=host).fit()
    assert not (tmp_path / "run").exists()  # refused before step 1: the fresh run's folder is gone


def test_without_such_hooks_the_name_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    with pytest.raises(ConfigError, match=r"^train\.monitor: 'val_score' is not an evaluation value of this run; "
                       r"it reports val_bits_per_byte, val_loss$"):
        Trainer(_config(host), run_dir=tmp_path / "run", host=host).fit()
    assert not (tmp_path / "run").exists()


def test_a_hook_value_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    class Texts:
        @hookimpl
        def deepseek_evaluate(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
            metrics["val_score"] = "good"

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Texts(), dist="deepseek-texts").status == "ok"
    with pytest.raises(ConfigError, match=r"^train\.monitor: 'val_score' is 'good' in this evaluation's values \(a "
                       r"deepseek_evaluate hook set it\); a monitored value must be a number$"):
        Trainer(_config(host), run_dir=tmp_path / "run", host=host).fit()


def test_deepseek_eval_reports_the_models_values_without_the_hooks(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # an outside author monitored a hook's val_ score and looked for it in `deepseek eval`'s line:
    # the hook is given the trainer and runs in a run's evaluations only, as the docs now say
    from deepseek.cli.main import main

    host = _host()
    result = Trainer(_config(host), run_dir=tmp_path / "run", host=host).fit()
    assert result.val_metrics["val_score"] == SCORES[8]
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["eval", "--checkpoint", str(result.run_dir)], host=host)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert f"val_loss {result.val_metrics['val_loss']:.4f}" in out and "val_score" not in out
    docs = Path(__file__).resolve().parents[3] / "docs"
    flat = {name: " ".join((docs / name).read_text().split()) for name in ("hooks.md", "plugins.md", "python-api.md")}
    assert "Only a training run's evaluations call it" in flat["hooks.md"]
    assert "Only a run's evaluations call the hook: `deepseek eval` and `deepseek.evaluate` report" in flat["plugins.md"]
    assert "is not computed here, nor by `deepseek eval`" in flat["python-api.md"]
