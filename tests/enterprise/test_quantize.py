"""``quantize.*`` (torchao): the output is a run folder whose ``quantized`` model loads, evaluates,
generates and goes through ``deepseek.optimize``; Linear weights shrink as stated; numbers stay
within the stated tolerance of the original; deepseek-core alone names what loading needs; a
tampered file and bad input are refused with one line. int4/float8 run on CUDA only: on a CPU
they are refused clearly (and tested for real where a GPU is present). The commands run in this
process (``deepseek_run``), but for the core-alone ``eval``, which needs a process without
deepseek-enterprise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _compresshelpers import CONFIG, core_only_cli, train_tiny
from _inprocess import deepseek_here, deepseek_run

import deepseek
from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek_enterprise.compress.compressor import linear_weight_bytes
from deepseek_enterprise.compress.quantize import quantize_model

# The tiny GPT, wide enough that int8 weights plus their scales are < 1/3.5 of fp32.
QCONFIG = {**CONFIG, "model": {**CONFIG["model"], "d_model": 64, "d_ff": 256}}
INT8_TOLERANCE = 1e-1  # max relative error of the logits, as deepseek.optimize's int8 path states


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("quantize"), QCONFIG)


def _logits(run: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from deepseek.training.inference import load_trained

    model, _, _ = load_trained(run)
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids), ids


@pytest.mark.parametrize(("method", "ratio"), [("quantize.int8", 3.5), ("quantize.int8-weight", 3.5)])
def test_quantized_run_loads_evaluates_and_stays_close(trained: Path, method: str, ratio: float) -> None:
    out_dir = method.replace(".", "_")
    out = deepseek_run("compress", "--checkpoint", "run", "--method", method, "--out", out_dir,
                       "--latency-runs", "0", "--json", f"{out_dir}.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    report = json.loads((trained / f"{out_dir}.json").read_text())
    record = report["record"]
    assert record["layers"] == 2 * 4  # qkv, attention proj, fc, mlp proj per block; lm_head skipped
    assert record["quantized_weight_ratio"] >= ratio
    assert report["loads_with"].startswith("deepseek-enterprise with torchao")
    assert report["compressed"]["weights_bytes"] < report["original"]["weights_bytes"] / 2
    assert report["compressed"]["val_loss"] == pytest.approx(report["original"]["val_loss"], rel=1e-2)
    ev = deepseek_run("eval", "--checkpoint", out_dir, "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-6)
    (ref, ids), (got, _) = _logits(trained / "run"), _logits(trained / out_dir)
    assert 0 < ((got - ref).abs().max() / ref.abs().max()).item() < INT8_TOLERANCE
    gen = deepseek_run("generate", "--checkpoint", out_dir, "def ", "--max-new-tokens", "6", cwd=trained)
    assert gen.returncode == 0 and gen.stdout.startswith("def "), gen.stderr
    # The quantized layers really hold int8 data, rebuilt from the file.
    from deepseek.training.inference import load_trained

    model, _, _ = load_trained(trained / out_dir)
    assert model.blocks[0].mlp.fc.weight.qdata.dtype == torch.int8
    optimized = deepseek.optimize(model, (ids,), cache=False, runs=2, warmup=1)
    assert optimized.plan.tolerance == INT8_TOLERANCE  # a library-quantized model's default
    assert ((optimized(ids) - model(ids)).abs().max() / model(ids).abs().max()).item() <= INT8_TOLERANCE


def test_core_alone_names_what_loading_needs(trained: Path) -> None:
    out = deepseek_run("compress", "--checkpoint", "run", "--method", "quantize.int8", "--out", "q_core",
                       "--latency-runs", "0", cwd=trained)
    assert out.returncode == 0, out.stderr
    ev = core_only_cli("eval", "--checkpoint", "q_core", cwd=trained)
    assert ev.returncode == 2 and "model 'quantized' is provided by deepseek-enterprise" in ev.stderr, ev.stderr
    assert len(ev.stderr.strip().splitlines()) == 1


def test_stored_quantized_data_is_checked_like_input(tmp_path: Path) -> None:
    """A weights file whose int8 data was stored as float (or in another shape) is refused with
    the key and the fix, not cast silently."""
    from deepseek.training.checkpoint import load_into_model, save_model_state

    model = deepseek.create_model("quantized", base=QCONFIG["model"])
    state = model.state_dict()
    assert state["blocks.0.mlp.fc._weight_qdata"].dtype == torch.int8
    state["blocks.0.mlp.fc._weight_qdata"] = state["blocks.0.mlp.fc._weight_qdata"].float()
    save_model_state(tmp_path / "bad.safetensors", state)
    with pytest.raises(deepseek.CheckpointError, match=r"bad.safetensors: 'blocks.0.mlp.fc._weight_qdata' holds "
                       r"torch.float32 values where the model keeps torch.int8; the checkpoint is damaged"):
        load_into_model(deepseek.create_model("quantized", base=QCONFIG["model"]), tmp_path / "bad.safetensors")


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "quantize.int9"], "did you mean 'quantize.int8'"),
    (["--method", "quantize.int8", "--set", "skip=3"], "skip: expected a list"),
    (["--method", "quantize.int8", "--set", 'skip=["blocks","lm_head"]'], "no Linear layer to quantize"),
    # a typo quantized the layer it meant to keep (was accepted)
    (["--method", "quantize.int8", "--set", 'skip=["blocks.0.mlp.fcc"]'],
     "skip: 'blocks.0.mlp.fcc' names no module of the model (did you mean 'blocks.0.mlp.fc'?)"),
    (["--method", "quantize.int4-weight", "--set", "group_size=100"], "group_size: must be 32, 64, 128 or 256"),
    pytest.param(["--method", "quantize.int4-weight"], "error: --method quantize.int4-weight: runs on CUDA only (torchao",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    pytest.param(["--method", "quantize.float8"], "error: --method quantize.float8: runs on CUDA only (torchao",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_quantize_input_is_one_line_and_nothing_is_written(monkeypatch: pytest.MonkeyPatch, trained: Path,
                                                                args: list[str], message: str) -> None:
    code, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", "run", "--out", "never", *args)
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1
    assert not (trained / "never").exists()


def test_optimize_tells_quantization_schemes_apart() -> None:
    """The optimizer's decision cache keys on the weights' tensor types and metadata: int8 and
    int8 weight-only versions of one model are different structures (they once shared a key)."""
    from deepseek.graph.cache import structure_hash
    from deepseek.graph.inductor import InductorStage

    model = deepseek.create_model("tiny", d_model=64, n_heads=2, n_layers=1, max_seq_len=16)
    hashes = {structure_hash(model)}
    for scheme in ("int8", "int8-weight"):
        copy = deepseek.create_model("tiny", d_model=64, n_heads=2, n_layers=1, max_seq_len=16)
        quantize_model(copy, scheme, ["lm_head"], 128)
        hashes.add(structure_hash(copy))
        # inductor's freezing would fold the subclass weights into constants (19 s a call measured)
        assert InductorStage().settings(torch.device("cpu"), copy)[1]["freezing"] is False
    assert len(hashes) == 3
    assert InductorStage().settings(torch.device("cpu"), model)[1]["freezing"] is True


def test_quantized_model_builds_through_the_registry() -> None:
    config = config_from_dict({**QCONFIG, "model": {"name": "quantized", "base": QCONFIG["model"]}})
    from deepseek.training.build import build_model

    model = build_model(config)
    assert type(model).__name__ == "GPT" and model.blocks[1].attn.qkv.weight.qdata.dtype == torch.int8
    assert linear_weight_bytes(model.lm_head) == 256 * 64 * 4  # skipped: still fp32
    with pytest.raises(deepseek.ConfigError, match="model.base.name"):
        deepseek.create_model("quantized", base={"name": "quantized"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="int4 weight-only and float8 run on CUDA only")
@pytest.mark.parametrize("method", ["quantize.int4-weight", "quantize.float8"])
def test_cuda_schemes_round_trip(trained: Path, method: str) -> None:
    if method.endswith("float8") and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("float8 needs compute capability 8.9")
    out_dir = method.replace(".", "_")
    out = deepseek_run("compress", "--checkpoint", "run", "--method", method, "--set", "group_size=32"
                       if "int4" in method else "skip=[\"lm_head\"]", "--device", "cuda", "--out", out_dir,
                       "--latency-runs", "0", "--json", f"{out_dir}.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    report = json.loads((trained / f"{out_dir}.json").read_text())
    assert report["compressed"]["val_loss"] == pytest.approx(report["original"]["val_loss"], rel=3e-2)
    ev = deepseek_run("eval", "--checkpoint", out_dir, "--device", "cuda", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-3)



@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="float8 runs on CUDA of compute capability 8.9 or newer only")
def test_float8_per_tensor_keeps_128_by_128_layers_in_bf16() -> None:
    """torchao 0.18 reads a per-tensor float8 scale over a 128 x 128 weight as its 128 x 128 block
    scaling; its matmul then failed ('input_tensor must be 1x128 scaled', seen on an H100) for a
    GPT of d_model 128 on more than one row. Such layers stay in bf16; the others are float8."""
    model = deepseek.create_model("tiny", d_model=128, n_heads=2, n_layers=1, max_seq_len=32).cuda().eval()
    names = quantize_model(model, "float8", ["lm_head"], 128)
    block = model.blocks[0]
    assert "blocks.0.attn.proj" not in names and type(block.attn.proj.weight) is torch.nn.Parameter
    assert "blocks.0.attn.qkv" in names and "blocks.0.mlp.fc" in names
    assert block.attn.proj.weight.dtype == torch.bfloat16
    ids = torch.randint(0, 256, (2, 16), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(model(ids).float()).all()


MULTIMODAL = {
    "model": {"name": "multimodal.classifier", "fusion": "cross_attention",
              "vision": {"embed_dim": 16, "depths": [1, 1], "num_heads": [2, 2]},
              "audio": {"d_model": 32, "n_layers": 1},
              "text": {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}},
    "data": {"name": "multimodal.digits", "batch_size": 8, "eval_batches": 2, "eval_size": 16},
    "train": {"max_steps": 10, "warmup_steps": 1, "eval_interval": 0, "lr": 3e-3, "seed": 3},
    "precision": {"dtype": "fp32"},
    "strategy": {"name": "single", "device": "cpu"},
    "checkpoint": {"interval": 0},
    "logging": {"plot": False, "progress": False},
}


def test_the_tri_modal_classifier_quantizes_under_an_accuracy_budget(tmp_path: Path) -> None:
    """Swin, audio and text encoders and the fusion: their Linear layers go to int8; an accuracy
    budget (points) is read from val_accuracy; GPT-only pruning says it does not apply."""
    train_tiny(tmp_path, MULTIMODAL)
    out = deepseek_run("compress", "--checkpoint", "run", "--max-drop", "100pt", "--recipe", "prune.ffn ratio=0.5",
                       "--recipe", "prune.heads ratio=0.25", "--recipe", "quantize.int8", "--out", "mm8", "--latency-runs", "0", "--json", "mm8.json",
                       cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "mm8.json").read_text())
    verdicts = {c["recipe"]: c["verdict"] for c in report["candidates"]}
    assert verdicts["prune.ffn ratio=0.5"].startswith("not applicable: prune.ffn: prunes GPT models")
    # prune.heads shares prune.ffn's check and names itself (it said "prune.ffn"); a recipe's step names no
    # --method (it said "--method prune.ffn", an option this command was not given)
    assert verdicts["prune.heads ratio=0.25"].startswith("not applicable: prune.heads: prunes GPT models")
    assert verdicts["quantize.int8"].startswith("kept")
    record = report["record"][0]["record"]
    assert record["layers"] > 10 and record["quantized_weight_ratio"] > 2
    assert "val_accuracy" in report["compressed"]
    ev = deepseek_run("eval", "--checkpoint", "mm8", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-5)


@pytest.mark.parametrize(("model", "message"), [
    ({"name": "quantized", "scheme": "int9"}, "model.scheme: 'int9' (str) is not allowed (did you mean 'int8'?)"),
    ({"name": "quantized", "base": {"name": "tinyy"}}, "model.base.name: unknown model 'tinyy'; did you mean 'tiny'?"),
    ({"name": "quantized", "group_size": 7}, "model.group_size: must be 32, 64, 128 or 256"),
    ({"name": "quantized", "base": {"name": "tiny", "d_modle": 8}}, "model.base.d_modle"),
])
def test_bad_quantized_model_tables_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: dict,
                                                 message: str) -> None:
    import tomli_w

    (tmp_path / "bad.toml").write_text(tomli_w.dumps({**QCONFIG, "model": model}))
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "bad.toml", "--run-dir", "never", "--max-steps", "1")
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "never").exists()


def test_a_quantized_model_is_not_quantized_again() -> None:
    """`--recipe "quantize.int8 + quantize.int8"` failed inside torchao and was reported as a bug in
    deepseek-enterprise's compressor."""
    from types import SimpleNamespace

    from deepseek.errors import UsageError
    from deepseek.plugins.host import get_host
    from deepseek_enterprise.compress.compressor import create_compressor

    model = deepseek.create_model("tiny", d_model=64, n_heads=2, n_layers=1, max_seq_len=16)
    quantize_model(model, "int8", ["lm_head"], 128)
    compressor = create_compressor(get_host(), "quantize.int8", {}, where="--set")
    for name in ("tiny", "quantized"):
        with pytest.raises(UsageError, match=r"^quantize\.int8: the model is quantized already"):
            compressor.check_model(model, SimpleNamespace(model=SimpleNamespace(name=name)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_a_cuda_scheme_on_a_machine_without_a_gpu_is_one_line_also_on_meta() -> None:
    """eval, generate and bench build the model on the meta device first: torchao initialised CUDA
    there and the missing driver was reported as a bug in deepseek-enterprise's model."""
    from deepseek.errors import ConfigError

    for device in ("cpu", "meta"):
        with pytest.raises(ConfigError, match=r"^model\.scheme: int4-weight runs on CUDA only .* has no GPU; use the "
                                              r"model on a GPU machine"):
            deepseek.create_model("quantized", scheme="int4-weight", base={"name": "tiny"}, device=device)


@pytest.mark.parametrize("extra", [[], ["--set", 'train.init_from="q"']], ids=["its config", "from its weights"])
def test_training_a_quantized_model_is_one_line_and_leaves_no_run(monkeypatch: pytest.MonkeyPatch, trained: Path,
                                                                 extra: list[str]) -> None:
    """torchao's tensors take no gradient step: it was an internal error (NotImplementedError, exit 1)
    that left the new run folder's config.toml and metrics.jsonl behind."""
    if not (trained / "q").exists():
        code, err, _ = deepseek_here(monkeypatch, trained, "compress", "--checkpoint", "run", "--method",
                                     "quantize.int8", "--out", "q", "--latency-runs", "0")
        assert code == 0, err
    code, err, _ = deepseek_here(monkeypatch, trained, "train", "q/config.toml", "--max-steps", "5", "--run-dir",
                                 "tq", *extra)
    assert code == 2 and err.strip().splitlines() == [
        "error: model 'quantized' does not train: torchao's quantized weights take no gradient step; train or "
        "fine-tune the source run its compression.json names, then compress it again"], err
    assert not (trained / "tq").exists()


class PlainLM(torch.nn.Module):
    """A registered model that is a plain ``nn.Module``, not a TrainableModel: it declares nothing."""

    Options = NoOptions

    def __init__(self, options: NoOptions) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(256, 64)
        self.mix = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 256)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.out(torch.relu(self.mix(self.embed(input_ids))))
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def test_training_a_quantized_plain_module_is_one_line_and_leaves_no_run(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """A plain nn.Module base could not declare not_trainable (core reads declarations from
    TrainableModels only): deepseek train failed at step 1 with torchao's error. The quantized
    model is now a TrainableModel subclass of the base's class that declares it and nothing else."""
    from _hosts import enterprise_host, registering

    from deepseek.models.capabilities import model_capabilities
    from deepseek.models.protocol import TrainableModel
    from deepseek.training.build import build_model

    host = enterprise_host((registering("deepseek_register_models", {"acme.plain": PlainLM}), "acme-models"))
    table = {"name": "quantized", "scheme": "int8", "base": {"name": "acme.plain"}}
    model = build_model(config_from_dict({**QCONFIG, "model": table}, host=host), host=host)
    assert isinstance(model, PlainLM) and isinstance(model, TrainableModel) and type(model).__name__ == "PlainLM"
    assert model_capabilities(model) == frozenset() and model.mix.weight.qdata.dtype == torch.int8
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model(ids, ids))  # it still runs as the base's forward
    (tmp_path / "q.toml").write_text(
        'model = { name = "quantized", scheme = "int8", base = { name = "acme.plain" } }\n'
        '[data]\nseq_len = 16\nbatch_size = 2\n[strategy]\ndevice = "cpu"\n[precision]\ndtype = "fp32"\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "q.toml", "--max-steps", "2", "--run-dir", "tq",
                                 host=host)
    assert code == 2 and err.splitlines() == [
        "error: model 'quantized' does not train: torchao's quantized weights take no gradient step; train or "
        "fine-tune the source run its compression.json names, then compress it again"], err
    assert not (tmp_path / "tq").exists()


@pytest.mark.parametrize(("method", "table", "expected"), [
    ("quantize.int8", {}, (128, "tensor")),
    ("quantize.int4-weight", {"group_size": 32}, (32, "tensor")),
    ("quantize.float8", {"granularity": "row"}, (128, "row")),
])
def test_each_scheme_gives_torchao_the_group_size_and_granularity_its_options_set(method: str, table: dict,
                                                                                  expected: tuple) -> None:
    """What compress hands quantize_model and records in the quantized model's table: declared by
    each compressor (Quantize.kernel_options), not probed on its options."""
    from deepseek.plugins.host import get_host
    from deepseek_enterprise.compress.compressor import create_compressor

    assert create_compressor(get_host(), method, table, where="--set").kernel_options() == expected


@pytest.mark.parametrize("base", ["acme.plain", "tiny"])
def test_a_quantized_model_is_saved_whole_and_loads_back_the_same(base: str, tmp_path: Path) -> None:
    """``torch.save(model)`` of a ``quantized`` model failed: torchao gives each layer it quantizes
    an extra_repr over a functools.partial, which pickle cannot save ('functools.partial' object
    has no attribute '__name__'); over a plain nn.Module, the TrainableModel subclass made at run
    time was no module's attribute either. Both now load back with the same class, declaration,
    int8 weights and outputs."""
    from _hosts import enterprise_host, registering

    from deepseek.models.protocol import TrainableModel
    from deepseek.training.build import build_model

    host = enterprise_host((registering("deepseek_register_models", {"acme.plain": PlainLM}), "acme-models"))
    table = {"name": "quantized", "scheme": "int8", "base": {"name": base}}
    model = build_model(config_from_dict({**QCONFIG, "model": table}, host=host), host=host).eval()
    torch.save(model, tmp_path / "whole.pt")
    loaded = torch.load(tmp_path / "whole.pt", weights_only=False).eval()  # our own file, written just above
    assert type(loaded) is type(model) and isinstance(loaded, TrainableModel)
    assert loaded.not_trainable == model.not_trainable
    layers = {n: m.weight.qdata for n, m in loaded.named_modules() if hasattr(getattr(m, "weight", None), "qdata")}
    assert layers and all(q.dtype == torch.int8 for q in layers.values())
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        args = (ids, ids) if base == "acme.plain" else (ids,)
        torch.testing.assert_close(loaded(*args), model(*args), rtol=0, atol=0)
    assert loaded.state_dict().keys() == model.state_dict().keys()  # the plain-tensor state-dict hooks came along
