"""``tp`` (tensor parallelism, DTensor ``parallelize_module``) on 2 CPU processes (gloo, fp32)
against ``single``: per-step losses and gradient norms, with and without sequence parallelism
(and with accumulation and activation checkpointing); checkpoints both ways (single -> tp,
tp -> single, tp -> tp, fsdp sharded -> tp) continuing the one ``single`` curve, the written
state equal to single's; the parameters really split (each rank holds its own heads' q, k, v);
greedy decoding under tp token for token equal to one process, from the Python API and from
``deepseek launch -n 2 -- generate --strategy tp``; the advisor's tp activation formula against
the tensors autograd saves on a rank; the rules refused before any process.

Tolerance as for ddp/fsdp (test_ddp, test_fsdp): fp32 on CPU; the row-parallel all-reduce sums
two partial matmuls in another order than one full matmul (~1e-7 relative per step), 1e-5 over
a few steps. A wrong shard (q|k|v split naively), a missing reduction or a clip on a local norm
moves the loss by >= 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _prohelpers import (
    PARITY_STEPS,
    deepseek_cli,
    losses,
    random_gpt_weights,
    run_single,
    run_torchrun,
    run_train_jobs,
    tiny_run,
)

from deepseek.config.load import load_config
from deepseek.errors import ConfigError
from deepseek.models.gpt import GPT, GPTConfig
from deepseek.training.checkpoint import load_model_state, read_full_state
from deepseek_pro.strategies.tp import TPStrategy

RTOL = 1e-5
ATOL = 1e-5
HERE = Path(__file__).resolve().parent
SP = {"sequence_parallel": True}


@pytest.fixture(scope="module")
def tp_runs(single_reference: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every tp job in one 2-process torchrun job, then single resumed from tp's checkpoint."""
    work = tmp_path_factory.mktemp("tp_runs")
    every4 = {"interval": 4}
    tp_ckpt = work / "tp" / "checkpoints" / "step-4"
    sharded = work / "fsdp_sharded" / "checkpoints" / "step-4"
    jobs = [
        {"name": "tp", "config": tiny_run("tp", PARITY_STEPS, checkpoint=every4), "unwrapped": True},
        {"name": "tp_sp_accum", "config": tiny_run("tp", PARITY_STEPS, options=SP,
                                                    train={"grad_accum": 2, "activation_checkpointing": True})},
        {"name": "tp_from_single", "config": tiny_run("tp", 6),
         "resume": single_reference["dir"] / "checkpoints" / "step-4"},
        {"name": "tp_resume", "config": tiny_run("tp", 6), "resume": tp_ckpt},
        {"name": "fsdp_sharded", "config": tiny_run("fsdp", 4, options={"checkpoint": "sharded"}, checkpoint=every4)},
        {"name": "tp_sp_from_sharded", "config": tiny_run("tp", 6, options=SP), "resume": sharded},
    ]
    records = run_train_jobs(jobs, work, timeout=600)
    records["single_from_tp"] = run_single(tiny_run("single", 6), work / "single_from_tp", resume=tp_ckpt)
    return {"dir": work, "records": records}


def _ref(single_reference: dict) -> list[float]:
    return losses(single_reference["records"])


@pytest.mark.parametrize("name", ["tp", "tp_sp_accum"])
def test_losses_and_grad_norms_equal_single(name: str, tp_runs: dict, single_reference: dict) -> None:
    got = tp_runs["records"][name]
    assert losses(got) == pytest.approx(_ref(single_reference)[:PARITY_STEPS], rel=RTOL)
    # The norm is global: both ranks' halves of every sharded gradient, the whole ones once.
    ref_norms = [r["grad_norm"] for r in single_reference["records"][:PARITY_STEPS]]
    assert [r["grad_norm"] for r in got] == pytest.approx(ref_norms, rel=1e-4)


@pytest.mark.parametrize("name", ["tp_from_single", "tp_resume", "single_from_tp"])
def test_checkpoints_continue_the_single_curve(name: str, tp_runs: dict, single_reference: dict) -> None:
    got = tp_runs["records"][name]
    assert [r["step"] for r in got] == [5, 6]
    assert losses(got) == pytest.approx(_ref(single_reference)[4:6], rel=RTOL)


def test_resume_under_tp_is_bit_exact(tp_runs: dict) -> None:
    assert losses(tp_runs["records"]["tp_resume"])[:1] == losses(tp_runs["records"]["tp"])[4:5]


def test_a_sharded_fsdp_checkpoint_loads_under_tp_with_sequence_parallel(tp_runs: dict, single_reference: dict) -> None:
    got = tp_runs["records"]["tp_sp_from_sharded"]
    assert losses(got) == pytest.approx(_ref(single_reference)[4:6], rel=RTOL)


def test_written_state_is_canonical_and_equal_to_single(tp_runs: dict, single_reference: dict) -> None:
    # Fused q|k|v rows are written back in canonical order: the weights and AdamW moments equal
    # single's at step 4, name for name (a rank-major qkv would be off by the weights' size).
    model, optim = read_full_state(tp_runs["dir"] / "tp" / "checkpoints" / "step-4")
    ref_model, ref_optim = read_full_state(single_reference["dir"] / "checkpoints" / "step-4")
    assert set(model) == set(ref_model)
    for key, value in ref_model.items():
        torch.testing.assert_close(model[key], value, rtol=0, atol=ATOL, msg=lambda m, k=key: f"{k}: {m}")
    for name, values in ref_optim["state"].items():
        for key, value in values.items():
            torch.testing.assert_close(optim["state"][name][key].float(), value.float(), rtol=0, atol=ATOL,
                                       msg=lambda m, n=name, k=key: f"{n}/{k}: {m}")
    unwrapped = load_model_state(tp_runs["dir"] / "tp" / "unwrapped.safetensors")
    final, _ = read_full_state(tp_runs["dir"] / "tp" / "checkpoints" / "step-5")
    for key, value in final.items():
        assert torch.equal(unwrapped[key], value), key


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("tp_probe") / "probe.json"
    run_torchrun([str(HERE / "_tp_probe.py"), str(out)], timeout=300)
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.parametrize("sp", [False, True])
def test_parameters_are_split_by_heads_and_units(sp: bool, probe: dict) -> None:
    seen = probe[f"sp={sp}"]
    norm = ["R"] if sp else "whole"  # sequence-parallel norms are replicated DTensors
    assert seen["placements"] == {
        "wte.weight": "whole", "wpe.weight": "whole",
        "blocks.0.ln1.weight": norm, "blocks.0.ln1.bias": norm, "blocks.0.ln2.weight": norm, "blocks.0.ln2.bias": norm,
        "blocks.0.attn.qkv.weight": ["S(0)"], "blocks.0.attn.qkv.bias": ["S(0)"],
        "blocks.0.attn.proj.weight": ["S(1)"], "blocks.0.attn.proj.bias": ["R"],
        "blocks.0.mlp.fc.weight": ["S(0)"], "blocks.0.mlp.fc.bias": ["S(0)"],
        "blocks.0.mlp.proj.weight": ["S(1)"], "blocks.0.mlp.proj.bias": ["R"],
        "ln_f.weight": norm, "ln_f.bias": norm,
    }
    local = seen["local"]
    assert local["blocks.1.attn.qkv.weight"] == [96, 64]  # 2 of 4 heads x (q, k, v) x 16
    assert local["blocks.1.attn.proj.weight"] == [64, 32]
    assert local["blocks.1.mlp.fc.weight"] == [128, 64] and local["blocks.1.mlp.proj.weight"] == [64, 128]
    assert seen["own_heads_qkv"]  # rank 0: rows of heads 0-1 of q, of k and of v


def test_greedy_decoding_is_token_identical_with_a_head_sharded_cache(probe: dict) -> None:
    assert probe["cache_heads"] == 2
    assert probe["tokens_tp"] == probe["tokens_single"]
    assert len(probe["tokens_tp"][0]) == 45 and len(set(probe["tokens_tp"][0])) > 3


def _random_weights(path: Path) -> Path:
    return random_gpt_weights(path, seed=3, std=0.3, n_layers=2)


def test_launch_generate_with_tp_prints_what_one_process_does(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    args = ["generate", "--checkpoint", str(weights), "--temperature", "0", "--max-new-tokens", "40", "hello"]
    one = deepseek_cli(*args)
    two = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "tp")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert one.stdout.startswith("hello") and len(one.stdout) > len("hello\n")
    assert two.stdout == "[rank0] " + one.stdout  # rank 0 alone prints


def test_launch_serves_a_prompt_file_with_tp_like_one_process(tmp_path: Path) -> None:
    # Batches of 1 and 3 prompts (by token length): the head-sharded KV cache with batch > 1.
    weights = _random_weights(tmp_path / "w.safetensors")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("abc\nhello\nxyz\nuvw\n", encoding="utf-8")
    args = ["generate", "--checkpoint", str(weights), "--prompts", str(prompts), "--temperature", "0",
            "--max-new-tokens", "30"]
    one = deepseek_cli(*args)
    two = deepseek_cli("launch", "-n", "2", "--", *args, "--strategy", "tp")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert len(one.stdout.splitlines()) == 4
    assert two.stdout == "".join(f"[rank0] {line}\n" for line in one.stdout.splitlines())
    assert "served 4 prompts in 2 batches: 120 new tokens in" in two.stderr


def test_tp_generate_outside_the_launcher_is_one_line(tmp_path: Path) -> None:
    weights = _random_weights(tmp_path / "w.safetensors")
    out = deepseek_cli("generate", "--checkpoint", str(weights), "--strategy", "tp", "hello", timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == (
        "error: strategy 'tp' needs one process per device started by a launcher (missing environment: RANK, "
        "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); run it with `deepseek launch -n N -- generate "
        "--strategy tp ...` (or `torchrun --nproc-per-node N -m deepseek generate --strategy tp ...`)")


# ----------------------------------------------------------------------------- rules, no process


def _config(*sets: str):
    return load_config(None, ['strategy.name="tp"', *sets])


def _meta_gpt(**shape: Any) -> GPT:
    with torch.device("meta"):
        return GPT(GPTConfig(**{"d_model": 64, "n_heads": 4, "n_layers": 1, "max_seq_len": 32, **shape}))


def test_launch_checks_name_the_field() -> None:
    TPStrategy.check_launch(_config(), 4, _meta_gpt())
    with pytest.raises(ConfigError, match=r"^model\.n_heads: 4 attention heads do not split over 3 tensor-parallel"):
        TPStrategy.check_launch(_config(), 3, _meta_gpt())
    with pytest.raises(ConfigError, match=r"^model\.d_ff: 130 MLP units do not split over 4 tensor-parallel"):
        TPStrategy.check_launch(_config(), 4, _meta_gpt(d_ff=130))
    sp = _config("strategy.sequence_parallel=true", "data.seq_len=32")
    with pytest.raises(ConfigError, match=r"^data\.seq_len: 32 positions do not split over 3 ranks"):
        TPStrategy.check_launch(sp, 3, _meta_gpt(d_model=48, n_heads=6))


def test_config_rules_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^precision\.dtype: strategy 'tp' runs fp32 or bf16"):
        _config('precision.dtype="fp16"')
    with pytest.raises(ConfigError, match=r"^strategy\.async_tp: asynchronous TP needs strategy\.sequence_parallel"):
        _config("strategy.async_tp=true")
    with pytest.raises(ConfigError, match=r"strategy\.sequence_paralel: unknown key.*sequence_parallel"):
        _config("strategy.sequence_paralel=true")
    assert _config("strategy.sequence_parallel=true").strategy.options.sequence_parallel


@pytest.mark.parametrize("sp", [False, True])
def test_the_advisors_tp_activation_formula_matches_saved_tensors(sp: bool, probe: dict) -> None:
    # What autograd saves per layer on one of 2 ranks (fp32, batch 3 x 20), as core's test counts
    # it in one process: exactly the advisor's tp / tp+sp per-layer bytes.
    from deepseek.advise.estimate import TrainSetup, activation_bytes, shape_from_config

    shape = shape_from_config(GPTConfig(d_model=64, n_heads=4, n_layers=2, max_seq_len=32), "test")
    formula = activation_bytes(shape, TrainSetup(20, 3, "fp32"), tp=2, sequence_parallel=sp).per_layer
    assert probe[f"per_layer_bytes sp={sp}"] == pytest.approx(formula, rel=0.01)


def test_hybrid_tp_mesh_and_rules() -> None:
    from deepseek.errors import UsageError
    from deepseek_pro.strategies.hybrid import HybridStrategy, mesh_shape

    assert mesh_shape(8, 2, 2) == (2, 2) and mesh_shape(4, 1, 2) == (1, 2) and mesh_shape(4, 2) == (2, 2)
    with pytest.raises(UsageError, match=r"^strategy\.tp_size: 2 stages x 2 tensor-parallel ranks do not divide 6"):
        mesh_shape(6, 2, 2)
    hybrid = load_config(None, ['strategy.name="hybrid"', "strategy.pp_size=1", "strategy.tp_size=2",
                                "data.batch_size=8"])
    assert HybridStrategy.required_capabilities(hybrid) == {
        "pipeline": "strategy 'hybrid'", "tensor_parallel": "strategy 'hybrid' with strategy.tp_size > 1"}
    HybridStrategy.check_launch(hybrid, 4, _meta_gpt(n_layers=2))
    with pytest.raises(ConfigError, match=r"^model\.n_heads: 3 attention heads do not split over 2"):
        HybridStrategy.check_launch(hybrid, 4, _meta_gpt(d_model=48, n_heads=3, d_ff=64))
    with pytest.raises(ConfigError, match=r"^strategy\.sequence_parallel: sequence parallelism splits the positions "
                       r"over the tensor-parallel ranks; set strategy\.tp_size > 1"):
        load_config(None, ['strategy.name="hybrid"', "strategy.sequence_parallel=true"])
    uneven = load_config(None, ['strategy.name="hybrid"', "strategy.pp_size=1", "strategy.tp_size=2",
                                "strategy.sequence_parallel=true", "data.seq_len=31", "data.batch_size=8"])
    with pytest.raises(ConfigError, match=r"^data\.seq_len: 31 positions do not split over 2 ranks"):
        HybridStrategy.check_launch(uneven, 4, _meta_gpt(n_layers=2))
    odd = load_config(None, ['strategy.name="hybrid"', "strategy.pp_size=2", "strategy.tp_size=2"])
    with pytest.raises(ConfigError, match=r"^strategy\.tp_size: 2 stages x 2 tensor-parallel ranks do not divide 6"):
        HybridStrategy.check_launch(odd, 6, _meta_gpt(n_layers=2))
