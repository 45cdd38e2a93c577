"""``deepspeed`` (ZeRO 1/2/3, CPU offload) under torchrun (2 processes, gloo, DS_ACCELERATOR=cpu)
against ``single``.

Tolerance: DeepSpeed runs *our* torch AdamW on its flat fp32 partitions; AdamW is element-wise,
so the update equals the unsharded one and only the gradient reduction's summation order (and
DeepSpeed's own clipping arithmetic) differ: float32 rounding, 1e-5 relative over a few steps.
"""

from __future__ import annotations

import pytest
from _prohelpers import PARITY_STEPS, losses

from deepseek.errors import ConfigError

RTOL = 1e-5
RUNS = ["ds1", "ds2_accum", "ds2_offload", "ds3", "ds3_blocks", "ds3_modules", "ds3_offload", "ds_json"]


@pytest.mark.parametrize("name", RUNS)
def test_zero_stages_and_offload_equal_single(name: str, pro_runs: dict, single_reference: dict) -> None:
    got = losses(pro_runs["records"][name])
    assert got == pytest.approx(losses(single_reference["records"])[:PARITY_STEPS], rel=RTOL)
    norms = [r["grad_norm"] for r in pro_runs["records"][name]]
    ref = [r["grad_norm"] for r in single_reference["records"][:PARITY_STEPS]]
    assert norms == pytest.approx(ref, rel=1e-4)
    assert all(r["skipped"] == 0 for r in pro_runs["records"][name])


@pytest.mark.parametrize(("name", "recorded"), [("ds3", "block"), ("ds3_modules", "module"), ("ds1", "auto")])
def test_config_toml_records_the_gather_unit_chosen(name: str, recorded: str, pro_runs: dict) -> None:
    """``gather_unit = "auto"`` is recorded as what ZeRO-3 chose for the model (the tiny GPT offers
    blocks); what was set stays; below stage 3 nothing is gathered and "auto" stays."""
    import tomllib

    saved = tomllib.loads((pro_runs["dir"] / name / "config.toml").read_text(encoding="utf-8"))
    assert saved["strategy"]["gather_unit"] == recorded


def test_cuda_arch_list_sanitizer() -> None:
    from deepseek_pro.strategies.deepspeed import apply_cuda_arch_sanitizer, sanitize_cuda_arch_list

    assert sanitize_cuda_arch_list("9.0a") == "9.0"
    assert sanitize_cuda_arch_list("8.0;9.0a+PTX") == "8.0;9.0+PTX"
    assert sanitize_cuda_arch_list("8.6 9.0a 9.0") == "8.6;9.0"
    assert sanitize_cuda_arch_list("10.0a;12.0") == "10.0;12.0"
    env = {"TORCH_CUDA_ARCH_LIST": "9.0a"}
    assert apply_cuda_arch_sanitizer(env) == "9.0" and env["TORCH_CUDA_ARCH_LIST"] == "9.0"
    assert apply_cuda_arch_sanitizer(env) is None  # already clean: untouched
    assert apply_cuda_arch_sanitizer({}) is None


def test_sanitized_list_parses_in_deepspeeds_op_builder(monkeypatch: pytest.MonkeyPatch) -> None:
    # The trap on H100/H200 images: DeepSpeed's JIT op builder parses each entry's minor version
    # as an int, so "9.0a" raises ValueError when it builds e.g. fused_adam.
    from deepspeed.ops.op_builder.fused_adam import FusedAdamBuilder

    from deepseek_pro.strategies.deepspeed import sanitize_cuda_arch_list

    builder = FusedAdamBuilder()
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0a")
    with pytest.raises(ValueError, match="0a"):
        builder.compute_capability_args()
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", sanitize_cuda_arch_list("8.0;9.0a"))
    flags = builder.compute_capability_args()
    assert flags == ["-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90"]


def test_generated_config() -> None:
    from deepseek.config.validate import build_dataclass
    from deepseek_pro.strategies.deepspeed import DeepSpeedOptions, build_ds_config

    opts = build_dataclass(DeepSpeedOptions, {"stage": 3, "offload_optimizer": True, "offload_params": True},
                           path="strategy")
    cfg = build_ds_config(opts, precision="bf16", world_size=2, on_cuda=False)
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert cfg["zero_optimization"]["memory_efficient_linear"] is False
    assert cfg["zero_optimization"]["stage3_prefetch_bucket_size"] == 50_000_000  # DeepSpeed's defaults
    assert cfg["zero_optimization"]["stage3_param_persistence_threshold"] == 100_000
    tuned = build_dataclass(DeepSpeedOptions, {"stage": 3, "prefetch_bucket_size": 200_000_000,
                                               "reduce_bucket_size": 100_000_000}, path="strategy")
    zero = build_ds_config(tuned, precision="bf16", world_size=2, on_cuda=True)["zero_optimization"]
    assert zero["stage3_prefetch_bucket_size"] == 200_000_000 and zero["reduce_bucket_size"] == 100_000_000
    assert cfg["bf16"] == {"enabled": True} and "fp16" not in cfg
    assert cfg["train_batch_size"] == 2 and "optimizer" not in cfg
    assert "compile" not in cfg
    compiled = build_dataclass(DeepSpeedOptions, {"stage": 3, "deepcompile": True}, path="strategy")
    assert build_ds_config(compiled, precision="bf16", world_size=2, on_cuda=True)["compile"] == {"deepcompile": True}
    fp16 = build_ds_config(build_dataclass(DeepSpeedOptions, {}, path="strategy"), precision="fp16",
                           world_size=4, on_cuda=True, init_scale=2.0**12, growth_interval=500)
    assert fp16["fp16"] == {"enabled": True, "loss_scale": 0, "initial_scale_power": 12, "loss_scale_window": 500}
    assert fp16["zero_optimization"] == {"stage": 2, "contiguous_gradients": True, "overlap_comm": True,
                                         "reduce_bucket_size": 500_000_000}


def test_bad_options_name_the_field(tmp_path) -> None:
    from deepseek.config.validate import build_dataclass
    from deepseek_pro.strategies.deepspeed import DeepSpeedOptions

    with pytest.raises(ConfigError, match=r"strategy\.offload_params: parameter offload needs ZeRO stage 3"):
        build_dataclass(DeepSpeedOptions, {"stage": 2, "offload_params": True}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.prefetch_bucket_size: must be > 0"):
        build_dataclass(DeepSpeedOptions, {"prefetch_bucket_size": 0}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.stage: 4 .*is not allowed"):
        build_dataclass(DeepSpeedOptions, {"stage": 4}, path="strategy")
    with pytest.raises(ConfigError, match=r"strategy\.config_path: .* is not a file"):
        build_dataclass(DeepSpeedOptions, {"config_path": str(tmp_path / "nope.json")}, path="strategy")


def test_bf16_section_tracks_single_bf16(pro_runs: dict, single_mixed_precision: dict) -> None:
    # DeepSpeed's bf16 mode keeps bf16 weights with fp32 masters; single autocasts: 1e-2 relative.
    got = losses(pro_runs["records"]["ds3_bf16prec"])
    assert got == pytest.approx(losses(single_mixed_precision["bf16"]), rel=1e-2)


def test_every_private_deepspeed_attribute_we_use_still_exists() -> None:
    """deepseek_pro.strategies.deepspeed_internals is the one place that touches DeepSpeed's
    private attributes; this fails when an upgrade renames or drops one of them."""
    import importlib
    import inspect

    from deepseek_pro.strategies.deepspeed_internals import PRIVATE_ATTRIBUTES

    for where, names in PRIVATE_ATTRIBUTES.items():
        module, cls_name = where.split(":")
        cls = getattr(importlib.import_module(module), cls_name)
        source = inspect.getsource(cls)
        missing = [n for n in names if not hasattr(cls, n) and f"self.{n} =" not in source]
        assert not missing, f"{where} no longer has {missing}; update deepspeed_internals"
    import deepspeed.ops

    from deepseek_pro.strategies.deepspeed_internals import SHM_COMM_OP

    assert SHM_COMM_OP in deepspeed.ops.__compatible_ops__


def test_zero3_padding_is_not_checked_as_weights(tmp_path) -> None:
    """ZeRO-3 leaves each partition's padding uninitialised; NaN bits there must not refuse a
    checkpoint, while a NaN in a real weight still does (``_zero3_padding.py``)."""
    import json

    from _prohelpers import HERE, run_torchrun, tiny_config

    config = tiny_config("deepspeed", steps=1, options={"stage": 3})
    config["model"].update({"d_model": 31, "n_heads": 1, "n_layers": 1, "max_seq_len": 8})
    config["data"]["seq_len"] = 8
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "result.json"
    extensions = tmp_path / "torch_extensions"
    run_torchrun([str(HERE / "_zero3_padding.py"), str(tmp_path / "config.json"), str(out)],
                 env={"TORCH_EXTENSIONS_DIR": str(extensions)})
    assert json.loads(out.read_text(encoding="utf-8")) == {"padding_nan": True, "weight_nan": False}
    # DeepSpeed's comm backend started without JIT-building its shared-memory all-reduce op
    # (inference-only; 60-185 s per environment on two cores): nothing was compiled.
    assert not list(extensions.rglob("*.so")), sorted(extensions.rglob("*"))
