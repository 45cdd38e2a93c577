"""A user's DeepSpeed JSON (``strategy.config_path``): Hugging Face-style ``"auto"`` values filled
from the run's config, settings the file and the config both state checked to agree (the ZeRO
stage, bf16/fp16), a scheduler refused, the path recorded absolute. Was: ``"auto"`` gave
"invalid literal for int() with base 10: 'auto'"; a file's stage 1 or bf16 ran while the run's
config.toml said stage 2 and fp32."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.config.load import config_from_dict
from deepseek.config.validate import build_dataclass
from deepseek.errors import ConfigError

HF_STYLE = {
    "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto",
    "gradient_clipping": "auto", "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
    "zero_optimization": {"stage": "auto", "reduce_bucket_size": "auto", "stage3_prefetch_bucket_size": "auto",
                          "overlap_comm": True},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
}


def _file(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(body), encoding="utf-8")
    return str(path)


def _config(path: str, **strategy: Any) -> Any:
    return config_from_dict({"model": {"name": "tiny"}, "precision": {"dtype": strategy.pop("dtype", "fp32")},
                             "strategy": {"name": "deepspeed", "config_path": path, **strategy}})


def test_hugging_face_auto_values_are_filled_from_the_run(tmp_path: Path) -> None:
    from deepseek_pro.strategies.deepspeed_user import user_ds_config

    config = _config(_file(tmp_path, HF_STYLE), stage=3)
    group = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1, "params": []}
    got = user_ds_config(config.strategy.options, world_size=2, precision="bf16", group=group, grad_clip=1.0)
    assert (got["train_micro_batch_size_per_gpu"], got["gradient_accumulation_steps"], got["train_batch_size"]) == (1, 1, 2)
    assert got["gradient_clipping"] == 1.0 and got["bf16"] == {"enabled": True} and got["fp16"] == {"enabled": False}
    zero = got["zero_optimization"]
    assert zero["stage"] == 3 and zero["reduce_bucket_size"] == 500_000_000 and zero["overlap_comm"] is True
    assert zero["stage3_prefetch_bucket_size"] == 50_000_000
    assert got["optimizer"]["params"] == {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}
    assert Path(config.strategy.options.config_path).is_absolute()


def test_a_file_silent_on_stage_and_precision_takes_the_runs(tmp_path: Path) -> None:
    from deepseek_pro.strategies.deepspeed_user import user_ds_config

    config = _config(_file(tmp_path, {"train_micro_batch_size_per_gpu": 2}), stage=1)
    got = user_ds_config(config.strategy.options, world_size=2, precision="bf16", group={"lr": 1e-3}, grad_clip=0.0)
    assert got["zero_optimization"]["stage"] == 1 and got["bf16"] == {"enabled": True} and "fp16" not in got
    assert got["train_batch_size"] == 4


@pytest.mark.parametrize(("body", "settings", "message"), [
    ({"zero_optimization": {"stage": 1}}, {}, r"sets zero_optimization\.stage = 1, and strategy\.stage is 2; set "
                                              r"strategy\.stage = 1 \(or \"auto\" in the file\)"),
    ({"bf16": {"enabled": True}}, {}, r"enables bf16, and precision\.dtype is 'fp32'; set precision\.dtype = \"bf16\""),
    ({"fp16": {"enabled": False}}, {"dtype": "fp16"}, r"disables fp16, and precision\.dtype is 'fp16'"),
    # auto is never fp16: refused at load, not on the workers after the launch
    ({"fp16": {"enabled": True}}, {"dtype": "auto"},
     r"enables fp16, and precision\.dtype is 'auto' \(bf16 on a GPU that has it, else fp32, never fp16\); set "
     r"precision\.dtype = \"fp16\""),
    ({"zero_optimization": {"stage": 2, "sub_group_size": "auto"}}, {},
     r"zero_optimization\.sub_group_size is \"auto\", which deepseek cannot fill in \(it fills "),
    ({"scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": "auto"}}}, {},
     r"has a scheduler, which would set the learning rate against deepseek's \[lr_schedule\]"),
    ({"train_micro_batch_size_per_gpu": 0}, {}, r"train_micro_batch_size_per_gpu is 0, where a whole number >= 1"),
])
def test_what_the_file_and_the_config_both_say_must_agree(tmp_path: Path, body: dict, settings: dict,
                                                          message: str) -> None:
    """Refused when the config loads, before deepseek launch starts a worker."""
    with pytest.raises(ConfigError, match=r"^strategy\.config_path: .*ds\.json'?:? " + message):
        _config(_file(tmp_path, body), **settings)


def test_auto_for_a_value_the_runs_optimizer_lacks_is_named(tmp_path: Path) -> None:
    from deepseek_pro.strategies.deepspeed_config import DeepSpeedOptions
    from deepseek_pro.strategies.deepspeed_user import user_ds_config

    body = {"optimizer": {"type": "SGD", "params": {"momentum": 0.9, "betas": "auto"}}}
    options = build_dataclass(DeepSpeedOptions, {"config_path": _file(tmp_path, body)}, path="strategy")
    with pytest.raises(ConfigError, match=r"optimizer\.params\.betas is \"auto\", and the run's optimizer has no betas"):
        user_ds_config(options, world_size=1, precision="fp32", group={"lr": 0.1, "momentum": 0.9}, grad_clip=0.0)


CPU_REFUSAL = (
    "strategy.config_path: {path!r}: optimizer.type {kind!r} is DeepSpeed's {op}, which has no build for this "
    "run's device 'cpu' (it runs on CUDA devices); here use optimizer.type \"Adam\", \"AdamW\", \"Adagrad\" or a "
    "torch.optim class (\"SGD\"){also}, or remove optimizer from the file and choose the run's [optimizer] "
    "(optimizer.name = \"lion\" runs everywhere)")
LION_ALSO = ", keep \"Lion\" with zero_optimization.offload_optimizer.device = \"cpu\" (DeepSpeedCPULion)"


@pytest.mark.parametrize(("kind", "offload", "refused"), [
    ("Lamb", False, "FusedLamb"), ("Lamb", True, "FusedLamb"), ("lion", False, "FusedLion"), ("Lion", True, None),
    ("AdamW", False, None), ("Adagrad", False, None), ("SGD", False, None),
])
def test_an_optimizer_deepspeed_cannot_run_on_the_cpu_is_refused_before_any_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, offload: bool, refused: str | None
) -> None:
    """Was DeepSpeed's traceback on every worker at set-up ("This op had not been implemented on
    CPU backend"). The launcher's check: DeepSpeed is not initialized, no op is built."""
    import torch

    from deepseek_pro.launch.checks import check_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    zero: dict[str, Any] = {"stage": 2, **({"offload_optimizer": {"device": "cpu"}} if offload else {})}
    path = _file(tmp_path, {"zero_optimization": zero, "optimizer": {"type": kind, "params": {"lr": 1e-3}}})
    config = _config(path)
    if refused is None:
        check_launch(config, 2, cuda_devices=0, nproc_per_node=2)
        return
    with pytest.raises(ConfigError) as info:
        check_launch(config, 2, cuda_devices=0, nproc_per_node=2)
    also = LION_ALSO if kind == "lion" else ""
    assert str(info.value) == CPU_REFUSAL.format(path=str(Path(path).resolve()), kind=kind, op=refused, also=also)


TORCH_NAMES = "ASGD, Adadelta, Adafactor, Adamax, NAdam, RAdam, RMSprop, Rprop, SGD"
UNKNOWN = ("strategy.config_path: {path!r}: optimizer.type {kind!r} is neither one of DeepSpeed's own optimizers "
           "(Adam, AdamW, Adagrad, Lamb, Lion, Muon, MuAdam, MuAdamW, MuSGD; any case) nor a torch.optim class spelled "
           "as torch spells it (" + TORCH_NAMES + "); {hint}fix optimizer.type, or remove optimizer from the file and "
           "choose the run's [optimizer]")
NOT_BUILT = ("strategy.config_path: {path!r}: optimizer.type {kind!r} is {what}: DeepSpeed cannot train with it; use "
             "another torch.optim class (" + TORCH_NAMES + "), or remove optimizer from the file and choose the run's "
             "[optimizer]")
NO_MUP = ("strategy.config_path: {path!r}: optimizer.type {kind!r} is DeepSpeed's {kind} from the mup package, which "
          "is not installed; install mup (its optimizers need mup.set_base_shapes on the model), use \"Adam\", "
          "\"AdamW\" or \"SGD\", or remove optimizer from the file and choose the run's [optimizer]")
REFUSED_TYPES: dict[str, str] = {
    # was DeepSpeed's "AssertionError: sgd is not a supported DeepSpeed Optimizer" on every rank
    "sgd": UNKNOWN.replace("{hint}", "did you mean 'SGD'? "),
    "rmsprop": UNKNOWN.replace("{hint}", "did you mean 'RMSprop'? "),
    "Foo": UNKNOWN.replace("{hint}", ""),
    # was "TypeError: 'module' object is not callable" (torch.optim.lr_scheduler is a module)
    "lr_scheduler": UNKNOWN.replace("{hint}", ""),
    # was TypeError / ValueError at deepspeed.initialize, RuntimeError at the first step
    "Optimizer": NOT_BUILT.replace("{what}", "torch's base class, which takes no learning rate"),
    "LBFGS": NOT_BUILT.replace("{what}", "torch's LBFGS, which takes no parameter groups (and steps with a closure)"),
    "SparseAdam": NOT_BUILT.replace("{what}", "torch's SparseAdam, which steps sparse gradients only"),
    # was "UnboundLocalError: cannot access local variable 'MuAdam'" after DeepSpeed logged "Install mup"
    "MuAdam": NO_MUP, "MuSGD": NO_MUP,
}


def _launch_check(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from deepseek_pro.launch.checks import check_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    check_launch(_config(path), 2, cuda_devices=0, nproc_per_node=2)


@pytest.mark.parametrize("kind", list(REFUSED_TYPES))
def test_an_optimizer_type_deepspeed_does_not_build_is_refused_when_the_config_loads(
    tmp_path: Path, kind: str
) -> None:
    """DeepSpeed 0.19.8 lower-cases only its own names; any other type must be a torch.optim
    class spelled as torch does, which it then calls with the parameter groups. Refused by the
    config loader (was: only by deepseek launch and each rank's set-up; config show, a train
    in one process and the Python API took it)."""
    import importlib.util

    if kind.startswith("Mu") and importlib.util.find_spec("mup") is not None:
        pytest.skip("mup is installed here")
    path = _file(tmp_path, {"optimizer": {"type": kind, "params": {"lr": 1e-3}}})
    with pytest.raises(ConfigError) as info:
        _config(path)
    assert str(info.value) == REFUSED_TYPES[kind].format(path=path, kind=kind)


@pytest.mark.parametrize("body", [{"params": {"lr": 1e-3}}, {"type": 3}, "AdamW"], ids=["no-type", "int", "string"])
def test_an_optimizer_without_a_type_string_is_refused(tmp_path: Path, body: object) -> None:
    """Was "AssertionError: zero stage 2 requires an optimizer" (no type) or "AttributeError: 'int'
    object has no attribute 'lower'" on every rank."""
    path = _file(tmp_path, {"optimizer": body})
    with pytest.raises(ConfigError, match=r"^strategy\.config_path: .*ds\.json': optimizer is .{0,90}, which needs a "
                                          r"\"type\" string naming the optimizer DeepSpeed builds; give one"):
        _config(path)


def test_config_show_refuses_the_type_in_one_line(tmp_path: Path) -> None:
    from _prohelpers import deepseek_here

    path = _file(tmp_path, {"optimizer": {"type": "sgd", "params": {"lr": 1e-3}}})
    proc = deepseek_here("config", "show", "--set", 'strategy.name="deepspeed"',
                         "--set", f"strategy.config_path={json.dumps(path)}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr[-3000:]
    assert proc.stderr.splitlines() == ["error: " + REFUSED_TYPES["sgd"].format(path=path, kind="sgd")]


def test_a_file_changed_after_the_config_loaded_is_refused_before_any_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every read of the file checks its type: deepseek launch reads it again."""
    path = _file(tmp_path, {"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}})
    config = _config(path)
    _file(tmp_path, {"optimizer": {"type": "Foo", "params": {"lr": 1e-3}}})
    import torch

    from deepseek_pro.launch.checks import check_launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        check_launch(config, 2, cuda_devices=0, nproc_per_node=2)
    assert str(info.value) == REFUSED_TYPES["Foo"].format(path=path, kind="Foo")


@pytest.mark.parametrize("kind", ["adamw", "ADAM", "adagrad", "muon", "SGD", "RMSprop", "NAdam", "Adafactor"])
def test_the_types_deepspeed_builds_pass_in_any_case_of_its_own_and_torchs_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    _launch_check(_file(tmp_path, {"optimizer": {"type": kind, "params": {"lr": 1e-3}}}), monkeypatch)


def test_the_own_names_are_deepspeeds_and_the_type_rule_holds_on_cuda_devices_too() -> None:
    """The names deepseek accepts in any case are exactly those DeepSpeed lower-cases; the torch
    classes left out are torch's; a CUDA run is held to the type rule (not to the CPU one)."""
    import torch
    from deepspeed.runtime.config import DEEPSPEED_OPTIMIZERS

    from deepseek_pro.strategies.deepspeed_user import (
        OWN_OPTIMIZERS,
        TORCH_NOT_BUILT,
        run_problem,
        type_problem,
    )

    assert sorted(OWN_OPTIMIZERS) == sorted(DEEPSPEED_OPTIMIZERS)
    assert all(isinstance(getattr(torch.optim, name), type) for name in TORCH_NOT_BUILT)
    assert run_problem({"optimizer": {"type": "Lamb"}}, "ds.json", "cuda", torch.nn.Linear(2, 2)) is None
    assert type_problem({"optimizer": {"type": "sgd"}}, "ds.json") == REFUSED_TYPES["sgd"].format(
        path="ds.json", kind="sgd")


@pytest.mark.parametrize("kind", ["Lamb", "sgd"])
def test_each_rank_refuses_it_at_set_up(tmp_path: Path, kind: str) -> None:
    """Workers started without the launcher (torchrun) refuse it too, in one line each, before
    DeepSpeed builds an engine: exit 2, no step recorded."""
    from _prohelpers import run_torchrun

    path = _file(tmp_path, {"optimizer": {"type": kind, "params": {"lr": 1e-3}}})
    proc = run_torchrun(["-m", "deepseek", "train", "--strategy", "deepspeed", "--set", 'model.name="tiny"',
                         "--set", f"strategy.config_path={json.dumps(path)}", "--max-steps", "2",
                         "--run-dir", "run"], cwd=tmp_path, check=False, timeout=180)
    line = "error: " + (CPU_REFUSAL.format(path=path, kind="Lamb", op="FusedLamb", also="") if kind == "Lamb"
                        else REFUSED_TYPES[kind].format(path=path, kind=kind))
    assert proc.returncode != 0 and "This op had not been implemented" not in proc.stderr, proc.stderr[-3000:]
    assert "AssertionError" not in proc.stderr, proc.stderr[-3000:]
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [line, line], proc.stderr[-3000:]
    assert proc.stderr.count("exitcode  : 2 ") == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["Lion", "MuAdamW"])
def test_deepseek_launch_refuses_it_in_one_line(tmp_path: Path, kind: str) -> None:
    import importlib.util

    from _prohelpers import deepseek_here

    if kind == "MuAdamW" and importlib.util.find_spec("mup") is not None:
        pytest.skip("mup is installed here")
    path = _file(tmp_path, {"optimizer": {"type": kind, "params": {"lr": 1e-4}}})
    proc = deepseek_here("launch", "-n", "2", "--", "train", "--strategy", "deepspeed", "--set", 'model.name="tiny"',
                         "--set", f"strategy.config_path={json.dumps(path)}", "--run-dir", str(tmp_path / "run"),
                         cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = (CPU_REFUSAL.format(path=path, kind="Lion", op="FusedLion", also=LION_ALSO) if kind == "Lion"
            else NO_MUP.format(path=path, kind=kind))
    assert proc.stderr.splitlines() == ["error: " + line]
    assert not (tmp_path / "run").exists()


NO_SHAPES = ("strategy.config_path: {path!r}: optimizer.type 'MuAdamW' is DeepSpeed's MuAdamW from the mup package, "
             "which needs mup.set_base_shapes on the model, and parameter {name!r} has no base shape (deepseek's own "
             "models do not set them); call mup.set_base_shapes in the model's __init__, use \"Adam\", \"AdamW\" or "
             "\"SGD\", or remove optimizer from the file and choose the run's [optimizer]")


def test_a_mup_optimizer_needs_mups_base_shapes_on_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With mup installed (1.0.0), DeepSpeed builds MuAdamW and mup asserts on every rank that each
    parameter has an ``infshape`` (was "internal error: AssertionError: A parameter with shape
    torch.Size([256, 128]) does not have `infshape` attribute" on each rank); a model whose base
    shapes are set passes (DeepSpeed 0.19.8 trains it, tried on its CPU accelerator)."""
    mup = pytest.importorskip("mup")
    import torch

    from deepseek_pro.strategies.deepspeed_user import run_problem

    path = _file(tmp_path, {"optimizer": {"type": "MuAdamW", "params": {"lr": 1e-3}}})
    config = _config(path)  # mup is installed: the type is one DeepSpeed builds
    with pytest.raises(ConfigError) as info:
        _launch_check(path, monkeypatch)
    assert str(info.value) == NO_SHAPES.format(path=path, name="wte.weight")

    def net(width: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU(), mup.MuReadout(width, 2))

    model = net(64)
    assert run_problem({"optimizer": {"type": "MuAdamW"}}, path, "cpu", model) == NO_SHAPES.format(path=path, name="0.weight")
    mup.set_base_shapes(model, net(16))
    assert run_problem({"optimizer": {"type": "MuAdamW"}}, path, "cpu", model) is None
    assert config.strategy.options.config_path == path


@pytest.mark.parametrize("kind", ["fifo", "big", "folder"])
def test_a_path_that_is_no_json_file_is_refused_in_one_line_unread(tmp_path: Path, kind: str,
                                                                   past_fifo: Callable[..., Any]) -> None:
    """The file is read again at launch and at set-up, after the config loaded: a FIFO put there
    waited for a writer forever, a 16 MiB + 1 file was read whole (and refused as broken JSON)."""
    from deepseek.parsing import MAX_FILE_BYTES
    from deepseek_pro.strategies.deepspeed_user import read_user_config

    path = tmp_path / "ds.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "big":
        with open(path, "wb") as fh:
            fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing written
    else:
        path.mkdir()
    with pytest.raises(ConfigError) as info:
        past_fifo(path, lambda: read_user_config(str(path), 1))
    why = {"fifo": ": not a regular file (a FIFO, device or socket); give a DeepSpeed JSON path",
           "big": f": larger than {MAX_FILE_BYTES:,} bytes, the most such a file has; give a DeepSpeed JSON path",
           "folder": " is not a file; give a DeepSpeed JSON path"}[kind]
    assert str(info.value) == f"strategy.config_path: {str(path)!r}{why}"
