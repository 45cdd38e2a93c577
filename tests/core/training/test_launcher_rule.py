"""``needs_launcher = True`` is enforced by core for every strategy that declares it
(:mod:`deepseek.training.launcher_env`): in a process no launcher started, set-up refuses in one
line (exit code 2) naming the strategy and ``deepseek launch``, before the strategy is built; a
process with the torchrun environment gets past the rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.launcher_env import LAUNCHER_ENV, LauncherEnv, launcher_env
from deepseek.training.single import SingleDeviceStrategy
from deepseek.training.trainer import Trainer

BUILT: list[str] = []


class Launched(SingleDeviceStrategy):
    """Declares it needs a launcher; trains in one process when started by one (world size 1)."""

    needs_launcher = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        BUILT.append("launched")
        super().__init__(*args, **kwargs)


class Plugin:
    @hookimpl
    def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
        register("acme.launched", Launched, description="needs_launcher on a one-device strategy")


TABLES = {"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 32},
          "data": {"seq_len": 16, "batch_size": 4, "eval_batches": 1}, "train": {"max_steps": 2, "eval_interval": 0},
          "strategy": {"name": "acme.launched"}, "precision": {"dtype": "fp32"},
          "checkpoint": {"interval": 0, "at_end": False}, "logging": {"progress": False, "plot": False}}

REFUSAL = ("strategy 'acme.launched' needs one process per device started by a launcher (missing environment: "
           "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); run it with "
           "`deepseek launch -n N -- train --strategy acme.launched ...` "
           "(or `torchrun --nproc-per-node N -m deepseek train --strategy acme.launched ...`)")


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> PluginHost:
    for key in LAUNCHER_ENV:
        monkeypatch.delenv(key, raising=False)
    BUILT.clear()
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="acme-parallel").status == "ok"
    return host


def _config(tmp_path: Path, host: PluginHost) -> Any:
    return config_from_dict({**TABLES, "logging": {**TABLES["logging"], "runs_dir": str(tmp_path / "runs")}}, host=host)


def test_a_launcher_strategy_without_a_launcher_is_refused_before_it_is_built(tmp_path: Path, host: PluginHost) -> None:
    with pytest.raises(UsageError) as info:
        Trainer(_config(tmp_path, host), run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert str(info.value) == REFUSAL
    assert BUILT == [] and not (tmp_path / "run").exists()


def test_deepseek_train_says_it_in_one_line_with_exit_code_2(
    tmp_path: Path, host: PluginHost, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = tmp_path / "tiny.toml"
    toml.write_text('[model]\nname = "tiny"\nd_model = 32\nn_heads = 2\nn_layers = 1\nmax_seq_len = 32\n'
                    '[data]\nseq_len = 16\nbatch_size = 4\n', encoding="utf-8")
    with pytest.raises(SystemExit) as info:
        main(["train", str(toml), "--strategy", "acme.launched", "--set", f"logging.runs_dir={tmp_path / 'runs'}"],
             host=host)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err == f"error: {REFUSAL}\n"


def test_a_process_torchrun_started_gets_past_the_rule(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = Trainer(_config(tmp_path, host), run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert BUILT == ["launched"] and len(result.losses) == 2
    assert launcher_env("x") == LauncherEnv(0, 1, 0, "127.0.0.1", 29511)


def test_a_malformed_launcher_environment_is_one_line() -> None:
    env = {"RANK": "zero", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    with pytest.raises(UsageError, match=r"^strategy 'ddp': the launcher environment is malformed \(invalid literal"):
        launcher_env("ddp", command="generate", environ=env)
    with pytest.raises(UsageError, match=r"missing environment: MASTER_PORT\); run it with "
                                         r"`deepseek launch -n N -- generate --strategy ddp"):
        launcher_env("ddp", command="generate", environ={**env, "RANK": "0", "MASTER_PORT": ""})


def test_a_script_is_told_to_run_under_the_launcher_as_a_script(monkeypatch: pytest.MonkeyPatch) -> None:
    """``deepseek.fit(..., strategy="ddp")`` in ``python train.py`` was told to run ``deepseek
    launch -n N -- train --strategy ddp``, which trains the built-in GPT, not the script."""
    monkeypatch.setattr("sys.argv", ["examples/own_model/train.py"])
    with pytest.raises(UsageError) as info:
        launcher_env("ddp", environ={})
    assert str(info.value).endswith(
        "run it with `deepseek launch -n N -- run examples/own_model/train.py` (or `torchrun --nproc-per-node N "
        "examples/own_model/train.py`), with strategy='ddp' in the script")


def test_a_one_process_strategy_in_one_of_several_launched_processes_is_refused(
    tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``deepseek launch -n 2 -- run train.py`` with ``strategy="single"`` in the script: every rank
    trained alone into the same run folder, and rank 0 was refused as "in use by another live job"
    (rank 1's). Now each rank refuses before anything is written, naming the strategies that fit."""
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = config_from_dict({**TABLES, "strategy": {"name": "single"},
                               "logging": {**TABLES["logging"], "runs_dir": str(tmp_path / "runs")}}, host=host)
    monkeypatch.setattr("sys.argv", ["train.py"])
    with pytest.raises(UsageError) as info:
        Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()
    assert str(info.value) == ("strategy 'single' trains in one process, but this process is one of the 2 a launcher "
                               "started (WORLD_SIZE=2); give deepseek.fit strategy='acme.launched' in train.py, "
                               "or launch -n 1")
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr("sys.argv", ["deepseek"])  # torchrun -m deepseek train: the CLI's option
    with pytest.raises(UsageError, match=r"\(WORLD_SIZE=2\); use --strategy acme.launched, or launch -n 1$"):
        Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit()
    monkeypatch.setenv("WORLD_SIZE", "1")  # a launch of one process trains as before
    assert len(Trainer(config, run_dir=tmp_path / "run", host=host, quiet=True).fit().losses) == 2
