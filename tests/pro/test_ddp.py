"""``ddp`` under torchrun (2 processes, gloo, CPU) against ``single`` in one process.

Tolerance: fp32 on CPU. DDP averages the two ranks' gradients of half the batch each, ``single``
takes the gradient of the whole batch: the same sums in another order, so they differ by float32
rounding (~1e-7 relative per step), which AdamW and a few steps keep far below 1e-5. Anything
wrong (a missing all-reduce, a wrong average, a rank seeing the wrong rows) moves the loss by
1e-3 or more after one step.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _prohelpers import PARITY_STEPS, losses, tiny_config

from deepseek.errors import ConfigError, UsageError

RTOL = 1e-5


def test_ddp_losses_equal_single(pro_runs: dict, single_reference: dict) -> None:
    ref = losses(single_reference["records"])
    got = losses(pro_runs["records"]["ddp"])
    assert len(got) == 6
    assert got == pytest.approx(ref[:6], rel=RTOL)
    assert got[-1] < got[0]


def test_ddp_accumulation_and_activation_checkpointing_equal_single(pro_runs: dict, single_reference: dict) -> None:
    # grad_accum=2 (no_sync on the first micro-batch) + recomputed activations: same gradient.
    got = losses(pro_runs["records"]["ddp_accum"])
    assert got == pytest.approx(losses(single_reference["records"])[:PARITY_STEPS], rel=RTOL)


def test_ddp_reports_uncompressed_traffic_without_compression(pro_runs: dict, single_reference: dict) -> None:
    import torch

    from deepseek.training.checkpoint import load_model_state

    # DDP all-reduces every distinct parameter's fp32 gradient once per step.
    ckpt = single_reference["dir"] / "checkpoints" / "step-2" / "model.safetensors"
    state = load_model_state(ckpt)
    distinct = sum(t.numel() for k, t in state.items() if k != "lm_head.weight")  # tied to wte
    for record in pro_runs["records"]["ddp"]:
        assert record["comm_bytes"] == record["comm_bytes_uncompressed"] == distinct * 4
        assert record["comm_reduction"] == 0.0
    assert torch.is_tensor(state["wte.weight"])


def test_options_are_validated() -> None:
    from deepseek.config.validate import build_dataclass
    from deepseek_pro.strategies.ddp import DDPOptions

    with pytest.raises(ConfigError, match=r"strategy\.compression: 'zip' .*is not allowed"):
        build_dataclass(DDPOptions, {"compression": "zip"}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.powersgd_start_iter: .* >= 2"):
        build_dataclass(DDPOptions, {"compression": "powersgd", "powersgd_start_iter": 1}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.powersgd_rank: must be >= 1"):
        build_dataclass(DDPOptions, {"powersgd_rank": 0}, path="strategy")
    # without compression = "powersgd" they were ignored without a word
    with pytest.raises(ConfigError, match=r"^strategy\.powersgd_rank: applies to compression = \"powersgd\", and "
                                          r"compression is 'none'; set compression = \"powersgd\""):
        build_dataclass(DDPOptions, {"powersgd_rank": 4}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.timeout_s: must be > 0"):
        build_dataclass(DDPOptions, {"timeout_s": 0}, path="strategy")


def test_without_torchrun_environment_says_how_to_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek.training.mixed_precision import Precision
    from deepseek_pro.strategies.ddp import DDPStrategy

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    strategy = DDPStrategy({}, precision=Precision("fp32"))
    with pytest.raises(UsageError, match=r"deepseek launch -n N -- train --strategy ddp"):
        strategy.setup_environment()


def test_fp16_loss_scaling_under_ddp_follows_single(pro_runs: dict, single_mixed_precision: dict) -> None:
    # The scaler checks the all-reduced gradients, so every rank skips (or takes) the same steps
    # as single does; fp16 autocast on both sides, so only the reduction order differs.
    got = pro_runs["records"]["ddp_fp16prec"]
    ref = single_mixed_precision["fp16"]
    assert [r["skipped"] for r in got] == [r["skipped"] for r in ref]
    assert [r["loss_scale"] for r in got] == [r["loss_scale"] for r in ref]
    assert losses(got) == pytest.approx(losses(ref), rel=1e-3)


def test_cluster_reports_are_compared_by_distribution() -> None:
    from deepseek_pro.strategies.cluster import compare_reports

    same = {"deepseek": "0.1.0", "torch": "2.11", "distributions": {"deepseek-core": "0.1.0 (ok)",
                                                                      "deepseek-pro": "0.1.0 (ok)"}}
    assert compare_reports([same, dict(same)]) is None
    other = {**same, "distributions": {**same["distributions"], "deepseek-pro": "0.2.0 (ok)"}}
    assert compare_reports([same, same, other]) == (
        "cluster mismatch: rank 2 has deepseek-pro 0.2.0 (ok) but rank 0 has deepseek-pro 0.1.0 (ok); "
        "install the same plugin distributions and versions (and the same DEEPSEEK_PLUGINS / "
        "DEEPSEEK_DISABLE_PLUGINS settings) on every node"
    )
    missing = {**same, "distributions": {"deepseek-core": "0.1.0 (ok)"}}
    assert "rank 1 has deepseek-pro not installed" in compare_reports([same, missing])
    assert "rank 1 runs torch 2.12" in compare_reports([same, {**same, "torch": "2.12"}])


def test_a_key_several_other_strategies_take_names_them_all() -> None:
    """strategy.checkpoint under deepspeed named ddp alone, though fsdp takes it too."""
    from deepseek.config.load import config_from_dict

    with pytest.raises(ConfigError, match=r"^strategy\.checkpoint: unknown key for strategy 'deepspeed'; strategy "
                                          r"'ddp' or 'fsdp' \(deepseek-pro\) take it: set strategy\.name = \"ddp\""):
        config_from_dict({"strategy": {"name": "deepspeed", "checkpoint": "sharded"}})


@pytest.mark.parametrize("find_unused", [False, True])
def test_parameters_unused_in_a_step_need_find_unused_parameters(tmp_path: Path, find_unused: bool) -> None:
    """A head used on every second step: torch's reduction error (naming a DDP argument deepseek
    did not offer) is one line naming strategy.find_unused_parameters, which trains the model."""
    from _prohelpers import deepseek_cli

    script = Path(__file__).with_name("_unused_fit.py")
    out = deepseek_cli("launch", "-n", "2", "--", "run", str(script), str(tmp_path), "1" if find_unused else "0",
                       timeout=300)
    if find_unused:
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(json.loads((tmp_path / "losses.json").read_text())) == 4
    else:
        assert out.returncode == 2, out.stderr[-3000:]
        assert "Traceback" not in out.stderr, out.stderr[-3000:]
        assert "strategy.find_unused_parameters: some of the model's parameters got no gradient" in out.stderr
        # the line names them (torch lists indices only): here the head the step before did not use
        assert re.search(r"got no gradient in the last step \((\S+\.)?heads\.[01]\.weight, (\S+\.)?heads\.[01]\.bias\),",
                         out.stderr), out.stderr[-3000:]


def test_unused_parameter_names_are_shown_as_lines_show_names() -> None:
    """A ModuleDict key with a line break or an ESC (a plugin part's) is named ``$'...'`` in the
    unused-parameter line, as other lines name what does not print, not raw."""
    import torch

    from deepseek_pro.strategies.ddp import unused_parameter_names

    model = torch.nn.Module()
    model.head = torch.nn.Linear(2, 2)
    model.parts = torch.nn.ModuleDict({"a\nb": torch.nn.Linear(2, 2, bias=False), "c\x1b[2J": torch.nn.Linear(2, 2)})
    message = "... Parameter indices which did not receive grad for rank 1: 2 3 4\n..."
    assert unused_parameter_names(message, model) == ["$'parts.a\\nb.weight'", "$'parts.c\\x1b[2J.weight'",
                                                      "$'parts.c\\x1b[2J.bias'"]


def test_static_graph_with_gradient_accumulation_is_refused_when_the_config_loads() -> None:
    # torch DDP's static graph fails under no_sync (an internal assert at the first backward,
    # pytorch/pytorch#143580; past it, the gradients stop being all-reduced), and accumulation
    # skips the all-reduce of every micro-batch but the last with no_sync.
    from deepseek.config.load import config_from_dict

    with pytest.raises(ConfigError, match=r"^strategy\.static_graph: .*train\.grad_accum = 2 .*set "
                                          r"strategy\.static_graph = false or train\.grad_accum = 1$"):
        config_from_dict(tiny_config("ddp", options={"static_graph": True}, train={"grad_accum": 2}))
    assert config_from_dict(tiny_config("ddp", options={"static_graph": True})).strategy.options.static_graph
    assert config_from_dict(tiny_config("ddp", train={"grad_accum": 2})).train.grad_accum == 2
