"""A pro run's checkpoints with deepseek-core alone: the unwrapped model is the whole trained
model, and core (deepseek_pro unimportable) resumes, evaluates and samples from an fsdp@2 sharded
checkpoint exactly as from its export to the full layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _checkpoint_state import RTOL, assert_same_state, ref_checkpoint
from _prohelpers import losses, run_single, tiny_run

from deepseek.training import checkpoint as ckpt
from deepseek.training.checkpoint import layout_of
from deepseek_pro.checkpoint import export_checkpoint


@pytest.mark.parametrize(("name", "step"), [("ddp", 6), ("fsdp", 5), ("ds3", 5)])
def test_unwrapped_model_is_the_whole_trained_model(name: str, step: int, pro_runs: dict) -> None:
    # fsdp / ZeRO-3 gather every shard into a plain CPU model equal to the last checkpoint.
    run = pro_runs["dir"] / name
    plain = ckpt.load_model_state(run / "unwrapped.safetensors")
    saved = ckpt.load_model_state(run / "checkpoints" / f"step-{step}" / ckpt.MODEL_FILE)
    assert set(plain) == set(saved)
    for key, value in saved.items():
        assert torch.equal(plain[key], value), key


# deepseek-core alone (deepseek_pro made unimportable) on a sharded checkpoint written by fsdp@2:
# every command in ONE process (each process pays seconds of torch imports), its stdout captured per
# command. A CLI command runs as `deepseek ARGS` does (a non-zero exit fails); ["train", config,
# run_dir, resume] runs core's Trainer.
_CORE_ONLY = """
import contextlib, io, json, sys
sys.modules["deepseek_pro"] = None
import torch
torch.set_num_threads(1)
from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.training.trainer import Trainer
outputs = []
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if command[0] == "train":
            config, run_dir, resume = command[1:]
            Trainer(config_from_dict(config), run_dir=run_dir, resume=resume, quiet=True).fit()
        else:
            try:
                main(command)
            except SystemExit as stop:
                if stop.code:
                    sys.exit(f"{command}: exit code {stop.code}")
    outputs.append(out.getvalue())
print(json.dumps(outputs))
"""


def _core_only(*commands: list[str]) -> list[str]:
    """Each command's stdout, all run in one core-only process (see ``_CORE_ONLY``)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DEEPSEEK_")}
    env.update(DEEPSEEK_DISABLE_PLUGIN_AUTOLOAD="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CORE_ONLY, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_core_alone_resumes_and_samples_from_sharded(pro_runs: dict, single_reference: dict, tmp_path: Path) -> None:

    from _prohelpers import train_records

    sharded = pro_runs["dir"] / "fsdp_sharded" / "checkpoints" / "step-4"
    assert layout_of(sharded) == "sharded" and len(list((sharded / "model").glob("*.safetensors"))) == 2
    assert sorted(p.name for p in sharded.glob("rng-*")) == ["rng-0.safetensors", "rng-1.safetensors"]
    exported = export_checkpoint(sharded, tmp_path / "exported")
    evaluate = ["eval", "--device", "cpu", "--json", "--checkpoint"]
    generate = ["generate", "ab", "--max-new-tokens", "8", "--device", "cpu", "--checkpoint"]
    row, ref, text, text_ref, _ = _core_only(
        [*evaluate, str(sharded)], [*evaluate, str(exported)], [*generate, str(sharded)], [*generate, str(exported)],
        ["train", tiny_run("single", 6), str(tmp_path / "core"), str(sharded)])
    got = train_records(tmp_path / "core")
    assert [r["step"] for r in got] == [5, 6]
    assert losses(got) == pytest.approx(losses(single_reference["records"])[4:6], rel=RTOL)
    assert_same_state(tmp_path / "core" / "checkpoints" / "step-6", ref_checkpoint(single_reference, 6))
    # bit-identical to resuming from the same checkpoint exported to the full layout
    via_export = run_single(tiny_run("single", 6), tmp_path / "via_export", resume=exported)
    assert losses(got) == losses(via_export)

    row, ref = json.loads(row), json.loads(ref)
    assert row["step"] == 4 and row["val_loss"] == ref["val_loss"]
    assert text.startswith("ab") and len(text) > 3 and text == text_ref
