"""`deepseek generate` / `eval` with `--strategy`: `single` places the model in this process and
prints what the plain command prints; a strategy this environment lacks names the distribution to
install; in every case nothing is written. `--dtype bf16` evaluates and samples in bf16. (Under
`deepseek launch` with deepseek-pro's `tp`: tests/pro/test_tp.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hostile_cli import Hostile, invoke

from deepseek.plugins.host import PluginHost


def test_single_strategy_prints_what_one_process_prints(trained_run: Path, core_host: PluginHost,
                                                         one_thread: None) -> None:
    args = ["generate", "--checkpoint", str(trained_run), "--temperature", "0", "--max-new-tokens", "8", "def "]
    plain, placed = invoke(args, core_host), invoke([*args, "--strategy", "single"], core_host)
    assert plain.code == placed.code == 0, placed.stderr
    assert placed.stdout == plain.stdout and plain.stdout.startswith("def ")
    evaluated = [invoke(["eval", "--checkpoint", str(trained_run), "--json", *extra], core_host)
                 for extra in ([], ["--strategy", "single"])]
    assert evaluated[0].code == evaluated[1].code == 0 and evaluated[0].stdout == evaluated[1].stdout


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_a_strategy_of_another_edition_names_it(command: str, hostile: Hostile, trained_run: Path) -> None:
    hostile.refused(command, "--checkpoint", str(trained_run), "--strategy", "tp",
                    expect=["strategy 'tp' is provided by deepseek-pro", "install it with"])


def test_an_unknown_strategy_is_one_line(hostile: Hostile, trained_run: Path) -> None:
    hostile.refused("generate", "--checkpoint", str(trained_run), "--strategy", "nosuch",
                    expect=["unknown strategy 'nosuch'"])


def test_bf16_weights_evaluate_within_bf16_rounding(trained_run: Path, core_host: PluginHost,
                                                    one_thread: None) -> None:
    import json

    from deepseek.training.inference import load_placed

    model, _, _, placer = load_placed(trained_run, "cpu", dtype="bf16", host=core_host)
    assert placer is None and {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.new_cache(1).keys[0].dtype == torch.bfloat16  # the KV cache follows the weights
    losses = {}
    for dtype in ("fp32", "bf16"):
        out = invoke(["eval", "--checkpoint", str(trained_run), "--json", "--dtype", dtype], core_host)
        assert out.code == 0, out.stderr
        losses[dtype] = json.loads(out.stdout)["val_loss"]
    assert losses["bf16"] != losses["fp32"] and losses["bf16"] == pytest.approx(losses["fp32"], rel=1e-2)
    sampled = invoke(["generate", "--checkpoint", str(trained_run), "--dtype", "bf16", "--max-new-tokens", "5",
                      "def "], core_host)
    assert sampled.code == 0 and sampled.stdout.startswith("def "), sampled.stderr
