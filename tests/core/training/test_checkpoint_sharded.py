"""deepseek-core alone reads the ``sharded`` checkpoint layout (deepseek-pro's ``checkpoint =
"sharded"``): ``single`` resumes from it bit-exactly as from the full layout, and ``generate`` /
``eval`` read it.

Core cannot run pro, so :func:`write_sharded` turns a ``single`` run's full checkpoint into the
sharded layout the way pro's ``save_checkpoint`` writes it: ``torch.distributed.checkpoint`` with
the safetensors storage writer into ``model/`` (tied names dropped) and ``optimizer/`` (keys
``state/<param>/<key>``), ``sharded.json`` and ``trainer.json``, and a ``rng-<rank>`` file per
rank. (Shards of several ranks are covered by tests/pro/test_checkpoint.py.)
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek.errors import CheckpointError
from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint import layout_of, read_full_state
from deepseek.training.checkpoint_sharded import (
    MODEL_DIR,
    OPTIMIZER_DIR,
    SHARDED_META,
    flatten_optimizer_state,
)
from deepseek.training.trainer import Trainer

RUN = {
    "model": {"dropout": 0.1},  # the RNG state has to come back too, not only weights and data position
    "train": {"max_steps": 6, "warmup_steps": 2},
    "checkpoint": {"interval": 3, "keep_last": 5},
}


def _tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            out[name] = first[id(p)]
        else:
            first.setdefault(id(p), name)
    return out


def _tree(value: Any) -> Any:
    return {str(k): _tree(v) for k, v in value.items()} if isinstance(value, dict) else ckpt.jsonable(value)


def write_sharded(full: Path, out: Path, aliases: dict[str, str], world_size: int = 2) -> Path:
    """The full checkpoint ``full`` rewritten as pro's sharded layout in ``out``."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter

    model, optim = read_full_state(full)
    stored = {k: v for k, v in model.items() if k not in aliases}
    tensors, scalars = flatten_optimizer_state(optim["state"])
    out.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        for folder, values in ((MODEL_DIR, stored), (OPTIMIZER_DIR, tensors)):
            writer = HuggingFaceStorageWriter(str(out / folder), save_distributed=True)
            dcp.save(values, storage_writer=writer, no_dist=True)
    groups = [{k: ckpt.jsonable(v) for k, v in g.items()} for g in optim["param_groups"]]
    body = {"param_groups": groups, "scalars": _tree(scalars), "aliases": aliases}
    (out / SHARDED_META).write_text(json.dumps(body, indent=1), encoding="utf-8")
    state = {k: v for k, v in ckpt.read_trainer_state(full).items() if k not in ("format", "format_version")}
    ckpt.write_trainer_state(out, {**state, "layout": "sharded", "world_size": world_size})
    shutil.copy2(full / "rng-0.safetensors", out / "rng-0.safetensors")
    torch.manual_seed(4321)  # the other ranks' generators differ from rank 0's
    for rank in range(1, world_size):
        ckpt.save_rng_state(out, rank)
    return out


@pytest.fixture
def runs(tiny_config, tmp_path: Path) -> dict[str, Any]:
    """A straight 6-step ``single`` run (checkpoints at 3 and 6) and its step-3 checkpoint in the
    sharded layout."""
    from deepseek.training.build import build_model

    config = tiny_config(**RUN)
    result = Trainer(config, run_dir=tmp_path / "straight").fit()
    full = result.run_dir / "checkpoints" / "step-3"
    aliases = _tied_aliases(build_model(config))
    assert aliases == {"lm_head.weight": "wte.weight"}
    sharded = write_sharded(full, tmp_path / "sharded" / "step-3", aliases)
    return {"config": config, "losses": result.losses, "run": result.run_dir, "full": full, "sharded": sharded}


def _strategy(config: Any, directory: Path) -> Any:
    """A ``single`` strategy set up for ``config`` and loaded from ``directory``."""
    from deepseek.training.build import (
        build_model,
        build_precision,
        optimizer_factory,
        prepare_model,
    )
    from deepseek.training.single import SingleDeviceStrategy, SingleOptions
    from deepseek.training.strategy import StepSettings

    strategy = SingleDeviceStrategy(SingleOptions(device="cpu"), precision=build_precision(config))
    strategy.setup_environment()
    strategy.place_for_training(prepare_model(build_model(config), config), optimizer_factory(config),
                   StepSettings())
    strategy.load_checkpoint(directory)
    return strategy


def _assert_equal_tree(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_equal_tree(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def test_sharded_layout_reads_back_exactly(runs: dict) -> None:
    assert layout_of(runs["full"]) == "full" and layout_of(runs["sharded"]) == "sharded"
    assert sorted(p.name for p in (runs["sharded"] / MODEL_DIR).iterdir()) == [
        "shard-00001-model-00001-of-00001.safetensors"
    ]
    model, optim = read_full_state(runs["sharded"])
    ref_model, ref_optim = read_full_state(runs["full"])
    _assert_equal_tree(model, ref_model)
    _assert_equal_tree(optim, ref_optim)
    assert model["lm_head.weight"] is model["wte.weight"]  # the tied name comes back from the alias


def test_single_loads_sharded_like_full(runs: dict) -> None:
    from_sharded = _strategy(runs["config"], runs["sharded"])
    from_full = _strategy(runs["config"], runs["full"])
    _assert_equal_tree(from_sharded.model.state_dict(), from_full.model.state_dict())
    got, ref = from_sharded.optimizer.state_dict(), from_full.optimizer.state_dict()
    _assert_equal_tree(got, ref)
    # the restored state is the checkpoint's, not a fresh optimizer's: moments, step, schedule lr
    assert set(got["state"][0]) == {"exp_avg", "exp_avg_sq", "step"} and float(got["state"][0]["step"]) == 3.0
    assert [g["lr"] for g in got["param_groups"]] != [runs["config"].train.lr] * 2
    assert [g["weight_decay"] for g in got["param_groups"]] == [runs["config"].optimizer.weight_decay, 0.0]


def test_single_resumes_from_sharded_bit_exactly(runs: dict, tiny_config, tmp_path: Path) -> None:
    resumed = Trainer(runs["config"], run_dir=tmp_path / "resumed", resume=runs["sharded"]).fit()
    assert resumed.losses == runs["losses"][3:]  # exact float equality: rank 0's RNG file was read
    last = tmp_path / "resumed" / "checkpoints" / "step-6"
    assert layout_of(last) == "full"  # single writes the canonical layout
    _assert_equal_tree(read_full_state(last), read_full_state(runs["run"] / "checkpoints" / "step-6"))


def test_generate_and_eval_read_sharded(runs: dict) -> None:
    from click.testing import CliRunner

    from deepseek.cli.generate_cmd import generate
    from deepseek.cli.train_cmd import evaluate
    from deepseek.training.inference import load_trained

    model, config, state = load_trained(runs["sharded"])
    ref, _, _ = load_trained(runs["full"])
    _assert_equal_tree(model.state_dict(), ref.state_dict())
    assert state["step"] == 3 and config.model.options.dropout == 0.1

    cli = CliRunner()
    args = ["--max-new-tokens", "8", "--device", "cpu"]
    texts = [cli.invoke(generate, ["--checkpoint", str(d), "ab", *args]) for d in (runs["sharded"], runs["full"])]
    assert all(r.exit_code == 0 for r in texts), [r.output for r in texts]
    assert texts[0].output == texts[1].output and len(texts[0].output) > 3
    losses = [cli.invoke(evaluate, ["--checkpoint", str(d), "--device", "cpu", "--json"])
              for d in (runs["sharded"], runs["full"])]
    assert all(r.exit_code == 0 for r in losses), [r.output for r in losses]
    rows = [json.loads(r.output) for r in losses]
    assert rows[0]["step"] == 3 and rows[0]["val_loss"] == rows[1]["val_loss"]


def test_export_weights_reads_sharded(runs: dict, tmp_path: Path) -> None:
    out = ckpt.export_weights(runs["sharded"], tmp_path / "w.safetensors")
    _assert_equal_tree(ckpt.load_model_state(out), ckpt.load_model_state(runs["full"] / ckpt.MODEL_FILE))


def _damage(src: Path, dst: Path, how: str) -> tuple[Path, str]:
    """A damaged copy of ``src``; returns (the path the error must name, a phrase of it)."""
    shutil.copytree(src, dst)
    if how == "truncated shard":
        victim = next((dst / MODEL_DIR).glob("*.safetensors"))
        victim.write_bytes(victim.read_bytes()[:100])
        return dst / MODEL_DIR, "corrupt or incomplete"
    if how == "empty model folder":
        for f in (dst / MODEL_DIR).iterdir():
            f.unlink()
        return dst / MODEL_DIR, "missing or empty"
    if how == "no sharded.json":
        (dst / SHARDED_META).unlink()
        return dst / SHARDED_META, "missing or corrupt"
    if how == "garbage sharded.json":
        (dst / SHARDED_META).write_text('{"param_groups": [1', encoding="utf-8")
        return dst / SHARDED_META, "missing or corrupt"
    if how == "no optimizer folder":
        shutil.rmtree(dst / OPTIMIZER_DIR)
        return dst / OPTIMIZER_DIR, "missing"
    shutil.rmtree(dst / MODEL_DIR)
    return dst, "no model weights"


@pytest.mark.parametrize("how", ["truncated shard", "empty model folder", "no sharded.json",
                                 "garbage sharded.json", "no optimizer folder", "no model folder"])
def test_damaged_sharded_checkpoint_is_one_line(runs: dict, tmp_path: Path, how: str) -> None:
    from deepseek.training.inference import load_trained

    folder = tmp_path / "broken" / "step-3"
    named, phrase = _damage(runs["sharded"], folder, how)
    with pytest.raises(CheckpointError) as info:
        Trainer(runs["config"], run_dir=tmp_path / "r", resume=folder).fit()
    message = str(info.value)
    assert message.startswith(f"{named}:") and phrase in message, message
    assert "\n" not in message and "fresh run" in message, message
    if how != "no optimizer folder":  # loading only the weights needs no optimizer state
        with pytest.raises(CheckpointError, match="^" + re.escape(f"{named}:")):
            load_trained(folder)
