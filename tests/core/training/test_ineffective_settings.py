"""Valid settings that do nothing useful in a run: one warning line each
(:class:`~deepseek.config.ineffective.IneffectiveSettingWarning`), at the trainer's set-up, on rank 0,
once; never an error, and never for a default."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from deepseek.config.ineffective import IneffectiveSettingWarning, ineffective_settings
from deepseek.config.load import config_from_dict, load_config
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[3]

WARMUP = ("train.warmup_steps: 5 >= train.max_steps 4: the learning rate never reaches train.lr (warm-up lasts "
          "the whole run); lower warmup_steps or raise max_steps")
FP16_CPU = ("precision.dtype: \"fp16\" on the CPU: CPUs lack fast float16 kernels, so steps run much slower than "
            "fp32 (12x for the default model on a 2-core EPYC) and round to fp16 for no gain; use precision.dtype "
            "= \"fp32\" or \"auto\" on the CPU (fp16 is for GPUs)")
NO_CHECKPOINT = ("checkpoint.interval: 10 > train.max_steps 4 with checkpoint.at_end = false: the run writes no "
                 "checkpoint (only a stop signal makes one); lower checkpoint.interval, set checkpoint.at_end = true, "
                 "or set checkpoint.interval = 0 to write none on purpose")

CASES: dict[str, tuple[dict[str, Any], str, str, str]] = {
    # name: (config changes to the tiny run, device type, compute dtype, the line)
    "warm-up past the end": ({"train": {"warmup_steps": 5}}, "cpu", "fp32", WARMUP),
    "warm-up to the end": (
        {"train": {"warmup_steps": 4}}, "cpu", "fp32",
        "train.warmup_steps: 4 >= train.max_steps 4: the learning rate reaches train.lr only at the last step "
        "(warm-up lasts the whole run); lower warmup_steps or raise max_steps"),
    "fp16 on the CPU": ({"precision": {"dtype": "fp16"}}, "cpu", "fp16", FP16_CPU),
    "no checkpoint": ({"checkpoint": {"interval": 10, "at_end": False}}, "cpu", "fp32", NO_CHECKPOINT),
    "keep_best, evaluating only at the end": (
        {"checkpoint": {"keep_best": True}}, "cpu", "fp32",
        "checkpoint.keep_best: the run evaluates only before its first step and after its last "
        "(train.eval_interval 0), so the best checkpoint can only be the last one; set train.eval_interval below "
        "train.max_steps, or keep_best = false"),
    "keep_best, evaluating past the end": (
        {"train": {"eval_interval": 4}, "checkpoint": {"keep_best": True}}, "cpu", "fp32",
        "checkpoint.keep_best: the run evaluates only before its first step and after its last "
        "(train.eval_interval 4 >= train.max_steps 4), so the best checkpoint can only be the last one; set "
        "train.eval_interval below train.max_steps, or keep_best = false"),
    "patience past the evaluations": (
        {"train": {"max_steps": 10, "eval_interval": 3, "early_stop_patience": 4}}, "cpu", "fp32",
        "train.early_stop_patience: 4 evaluations without improvement, but the run evaluates 3 time(s) between "
        "step 0 and its last step (train.eval_interval 3, train.max_steps 10): early stopping never ends it early; "
        "lower early_stop_patience or train.eval_interval"),
    "patience, evaluating only at the end": (
        {"train": {"early_stop_patience": 1}}, "cpu", "fp32",
        "train.early_stop_patience: 1 evaluations without improvement, but the run evaluates 0 time(s) between "
        "step 0 and its last step (train.eval_interval 0): early stopping never ends it early; lower "
        "early_stop_patience or train.eval_interval"),
    "loss scale without fp16": (
        {"precision": {"dtype": "auto", "init_scale": 1024.0, "growth_interval": 100}}, "cuda", "bf16",
        "precision.init_scale, precision.growth_interval: only fp16 uses a loss scale, and this run computes in "
        "bf16; remove init_scale and growth_interval or set precision.dtype = \"fp16\""),
    "sync_batchnorm on one process": (
        {"strategy": {"name": "single", "sync_batchnorm": True}}, "cpu", "fp32",
        "strategy.sync_batchnorm: strategy \"single\" is one process, whose BatchNorm layers already see the whole "
        "batch, so there is nothing to synchronise; remove sync_batchnorm, or use it with ddp or fsdp over several "
        "processes"),
    "sync_batchnorm on one process, by its qualified name": (  # was missed: the check read the bare name
        {"strategy": {"name": "deepseek-core:single", "sync_batchnorm": True}}, "cpu", "fp32",
        "strategy.sync_batchnorm: strategy \"single\" is one process, whose BatchNorm layers already see the whole "
        "batch, so there is nothing to synchronise; remove sync_batchnorm, or use it with ddp or fsdp over several "
        "processes"),
    "compile_scope without compile": (
        {"train": {"compile_scope": "model"}}, "cpu", "fp32",
        "train.compile_scope: \"model\" has no effect without train.compile = true; set compile = true, or remove "
        "compile_scope"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_ineffective_setting_is_one_line(name: str, tiny_config: Any) -> None:
    changes, device, dtype, line = CASES[name]
    assert ineffective_settings(tiny_config(**changes), device_type=device, compute_dtype=dtype) == [line]


@pytest.mark.parametrize("changes", [
    {"train": {"warmup_steps": 3}},  # reaches lr a step before the end
    {"precision": {"dtype": "fp16", "init_scale": 1024.0, "growth_interval": 100}},  # on a GPU: its loss scale
    {"checkpoint": {"interval": 10, "at_end": True}},  # the end's checkpoint
    {"checkpoint": {"interval": 4, "at_end": False}},  # the last step's
    {"checkpoint": {"interval": 0, "at_end": False}},  # none, on purpose
    {"checkpoint": {"interval": 10, "at_end": False, "keep_best": True}, "train": {"eval_interval": 2}},
    {"train": {"max_steps": 10, "eval_interval": 3, "early_stop_patience": 3}},  # at steps 3, 6, 9
    {"train": {"eval_interval": 100}},  # evaluated at step 0 and after the last step as with 0
    {"train": {"compile": True, "compile_scope": "model"}},
], ids=lambda c: str(c))
def test_settings_that_do_something_are_not_named(changes: dict[str, Any], tiny_config: Any) -> None:
    assert ineffective_settings(tiny_config(**changes), device_type="cuda", compute_dtype="fp16"
                                if changes.get("precision", {}).get("dtype") == "fp16" else "bf16") == []


@pytest.mark.parametrize(("device", "dtype"), [("cpu", "fp32"), ("cuda", "bf16"), ("mps", "fp32")])
def test_the_defaults_name_nothing(device: str, dtype: str) -> None:
    host = PluginHost(PluginSettings(autoload=False))
    config = config_from_dict({}, host=host)  # what `deepseek train` without arguments runs (README's main job)
    assert ineffective_settings(config, device_type=device, compute_dtype=dtype) == []
    for steps in (1, 2, 9, 10, 11, 299, 300, 301):  # the default warm-up follows max_steps, below it
        short = config_from_dict({"train": {"max_steps": steps}}, host=host)
        assert ineffective_settings(short, device_type=device, compute_dtype=dtype) == []


@pytest.mark.parametrize("name", ["quick-cpu.toml", "own-text.toml", "small-gpu.toml"])
def test_the_example_configs_name_nothing(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # own-text.toml reads docs/
    config = load_config(REPO / "examples" / "configs" / name, host=PluginHost(PluginSettings(autoload=False)))
    device = "cuda" if "gpu" in name else "cpu"
    dtype = {"auto": "bf16" if device == "cuda" else "fp32"}.get(config.precision.dtype, config.precision.dtype)
    assert ineffective_settings(config, device_type=device, compute_dtype=dtype) == []


def _fit(config: Any, run: Path) -> tuple[Any, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = Trainer(config, run_dir=run, quiet=True).fit()
    return result, [w for w in caught if issubclass(w.category, IneffectiveSettingWarning)]


def test_the_trainer_warns_each_once_and_trains_anyway(tiny_config: Any, tmp_path: Path) -> None:
    config = tiny_config(train={"warmup_steps": 5}, precision={"dtype": "fp16"},
                         checkpoint={"interval": 10, "at_end": False})
    result, caught = _fit(config, tmp_path / "run")
    assert [str(w.message) for w in caught] == [WARMUP, FP16_CPU, NO_CHECKPOINT]
    assert caught[0].filename == __file__  # points at the caller of fit()
    assert result.step == 4 and result.checkpoint is None  # warned, not refused: the run does what it was told
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").glob("step-*"))


def test_the_tiny_run_warns_nothing(tiny_config: Any, tmp_path: Path) -> None:
    _, caught = _fit(tiny_config(), tmp_path / "run")
    assert caught == []


def test_only_rank_zero_warns(tiny_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek.training.strategy import Strategy

    monkeypatch.setattr(Strategy, "is_global_zero", property(lambda self: False))  # as on rank 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = tiny_config(train={"warmup_steps": 5}, checkpoint={"at_end": False})  # no rank 0 to write one
        result = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()
    assert result.step == 4 and not result.is_global_zero
    assert [w for w in caught if issubclass(w.category, IneffectiveSettingWarning)] == []
