"""``deepseek compress`` and ``prune.ffn``: structure really removed (a smaller dense GPT that
deepseek-core alone loads), dead channels removed first so the output is unchanged, the run
folder's files, and bad input refused with one line. ``deepseek`` runs in this process
(``deepseek_run``); deepseek-core alone (``core_only_cli``) is a process of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _compresshelpers import CONFIG, core_only_cli, train_tiny
from _inprocess import deepseek_here, deepseek_run

import deepseek
from deepseek.config.load import config_from_dict
from deepseek_enterprise.compress.prune import PruneFFN, PruneFFNOptions


@pytest.mark.parametrize("score", ["magnitude", "taylor"])
def test_dead_channels_go_first_and_the_output_is_unchanged(score: str) -> None:
    """Half of every block's MLP channels zeroed: both scores rank them last, so removing half
    of the channels leaves exactly the same function in a smaller dense model."""
    torch.manual_seed(0)
    config = config_from_dict(CONFIG)
    model = deepseek.create_model("tiny", **{k: v for k, v in CONFIG["model"].items() if k != "name"}).eval()
    dead = torch.randperm(64)[:32]
    with torch.no_grad():
        for block in model.blocks:
            block.mlp.fc.weight[dead] = 0
            block.mlp.fc.bias[dead] = 0
            block.mlp.proj.weight[:, dead] = 0
    x = torch.randint(0, 256, (4, 16))
    calibration = [{"input_ids": x, "targets": torch.randint(0, 256, (4, 16))}]
    result = PruneFFN(PruneFFNOptions(ratio=0.5, score=score), host=None).compress(model, config, calibration)
    pruned = result.model
    assert pruned.config.d_ff == 32 and result.model_table["d_ff"] == 32
    for block in pruned.blocks:
        assert tuple(block.mlp.fc.weight.shape) == (32, 32) and tuple(block.mlp.proj.weight.shape) == (32, 32)
        assert block.mlp.fc.weight.abs().sum(dim=1).min() > 0  # only live channels kept
    assert pruned.lm_head.weight is pruned.wte.weight  # still tied
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in model.parameters()) - 2 * (
        32 * 32 * 2 + 32)
    assert model.config.d_ff == 64  # the original is left as it was


@pytest.mark.parametrize("score", ["magnitude", "taylor"])
def test_dead_heads_go_first_and_the_output_is_unchanged(score: str) -> None:
    """Two of four heads per block write nothing (value rows and output columns zeroed): both
    scores rank them last, so prune.heads ratio=0.5 keeps the same function with n_heads 2,
    head_dim unchanged, and the KV-cached decoding of core agrees with the full forward."""
    from deepseek_enterprise.compress.prune import PruneHeads, PruneHeadsOptions

    torch.manual_seed(0)
    shape = {k: v for k, v in CONFIG["model"].items() if k != "name"} | {"n_heads": 4}
    config = config_from_dict({**CONFIG, "model": {"name": "tiny", **shape}})
    model = deepseek.create_model("tiny", **shape).eval()
    hd, inner = 8, 32
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            for h in ((0, 2), (1, 3))[i % 2]:
                v = slice(2 * inner + h * hd, 2 * inner + (h + 1) * hd)
                block.attn.qkv.weight[v] = 0
                block.attn.qkv.bias[v] = 0
                block.attn.proj.weight[:, h * hd:(h + 1) * hd] = 0
    x = torch.randint(0, 256, (4, 16))
    calibration = [{"input_ids": x, "targets": torch.randint(0, 256, (4, 16))}]
    result = PruneHeads(PruneHeadsOptions(ratio=0.5, score=score), host=None).compress(model, config, calibration)
    pruned = result.model
    assert result.record["kept_heads"] == [[1, 3], [0, 2]]
    assert pruned.config.n_heads == 2 and pruned.config.head_dim == 8 and result.model_table["head_dim"] == 8
    for block in pruned.blocks:
        assert tuple(block.attn.qkv.weight.shape) == (3 * 16, 32) and tuple(block.attn.proj.weight.shape) == (32, 16)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x), rtol=1e-5, atol=1e-5)
        out = pruned.generate(x[:1, :4], 6, temperature=0)
        ref = model.generate(x[:1, :4], 6, temperature=0)
    assert torch.equal(out, ref)
    assert pruned.flops_per_token(16) < model.flops_per_token(16)


def test_ratios_that_keep_nothing_are_refused() -> None:
    from deepseek.errors import UsageError

    with pytest.raises(UsageError, match="keeps 0 channels"):
        PruneFFN(PruneFFNOptions(ratio=0.99, multiple_of=8), host=None).kept(64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("compress"))


def test_compress_writes_a_run_that_core_alone_evaluates(trained: Path) -> None:
    out = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.ffn", "--set", "ratio=0.5",
                       "--out", "pruned", "--latency-runs", "5", "--json", "c.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    report = json.loads((trained / "c.json").read_text())
    assert report["record"]["d_ff"] == [64, 32] and report["loads_with"] == "deepseek-core"
    assert report["compressed"]["parameters"] < report["original"]["parameters"]
    assert report["compressed"]["weights_bytes"] < report["original"]["weights_bytes"]
    assert json.loads((trained / "pruned" / "compression.json").read_text())["compressed"] == report["compressed"]
    assert "d_ff = 32" in (trained / "pruned" / "config.toml").read_text()
    ev = core_only_cli("eval", "--checkpoint", "pruned", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-5)
    gen = core_only_cli("generate", "--checkpoint", "pruned", "def ", "--max-new-tokens", "8", cwd=trained)
    assert gen.returncode == 0 and gen.stdout.startswith("def "), gen.stderr


def test_head_pruned_run_loads_and_generates_with_core_alone(trained: Path) -> None:
    out = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.heads", "--set", "ratio=0.5",
                       "--out", "heads", "--latency-runs", "0", "--json", "reports/h.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\nwrote reports/h.json (created folder reports)\n")  # --json named, as --out is
    report = json.loads((trained / "reports" / "h.json").read_text())
    assert report["record"]["n_heads"] == [2, 1] and report["compressed"]["parameters"] < report["original"]["parameters"]
    assert "head_dim = 16" in (trained / "heads" / "config.toml").read_text()
    ev = core_only_cli("eval", "--checkpoint", "heads", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-5)
    gen = core_only_cli("generate", "--checkpoint", "heads", "def ", "--max-new-tokens", "8", cwd=trained)
    assert gen.returncode == 0 and gen.stdout.startswith("def "), gen.stderr


def test_a_pruned_model_fine_tunes_from_its_weights(trained: Path) -> None:
    out = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.ffn", "--set", "ratio=0.5",
                       "--out", "p2", "--latency-runs", "0", "--json", "p2.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    pruned_loss = json.loads((trained / "p2.json").read_text())["compressed"]["val_loss"]
    tune = deepseek_run("train", "p2/config.toml", "--set", 'train.init_from="p2"', "--max-steps", "10",
                        "--run-dir", "ft", "--quiet", cwd=trained)
    assert tune.returncode == 0, tune.stderr
    records = [json.loads(x) for x in (trained / "ft" / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert vals[0] == pytest.approx(pruned_loss, rel=1e-5)  # it started from the pruned weights


def test_compress_of_exported_weights_measures_the_weights_it_read(trained: Path) -> None:
    """Was: ``exp/model.safetensors: is a file; pass the checkpoint folder that contains it`` after
    the model was loaded and evaluated: compress resolved ``--checkpoint`` a second time (for the
    weights it measures and the teacher of recover steps), as a checkpoint folder only, where the
    first read took exported weights, so the two could name different weights."""
    import tomli_w

    from deepseek.training.checkpoint import export_weights

    (trained / "exp").mkdir()
    weights = export_weights(trained / "run", trained / "exp" / "model.safetensors")
    (trained / "exp" / "config.toml").write_text(tomli_w.dumps({"data": CONFIG["data"]}))
    out = deepseek_run("compress", "--checkpoint", "exp/model.safetensors", "--method", "prune.ffn", "--set",
                       "ratio=0.5", "--out", "exp-pruned", "--latency-runs", "0", "--json", "exp.json", cwd=trained)
    assert out.returncode == 0, out.stderr
    report = json.loads((trained / "exp.json").read_text())
    assert report["source"] == "exp/model.safetensors"
    assert report["original"]["weights_bytes"] == weights.stat().st_size > report["compressed"]["weights_bytes"]


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "prune.fn"], "did you mean 'prune.ffn'"),
    (["--method", "prune.ffn", "--set", "ratio=1.5"], "ratio: must be between 0 and 1"),
    (["--method", "prune.ffn", "--set", "ratios=0.5"], "ratios: unknown"),
    (["--method", "prune.ffn", "--out", "run"], "--out: run is not empty"),
    # the memory check named data.eval_batches, a key the user never gave
    (["--method", "prune.ffn", "--batches", str(10**20)], f"--batches {10**20} x data.batch_size"),
])
def test_bad_input_is_one_line_and_nothing_is_written(monkeypatch: pytest.MonkeyPatch, trained: Path,
                                                       args: list[str], message: str) -> None:
    argv = ["compress", "--checkpoint", "run", "--out", "never", *args]
    if "--out" in args[2:]:
        argv = ["compress", "--checkpoint", "run", *args]
    code, err, _ = deepseek_here(monkeypatch, trained, *argv)
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1
    assert not (trained / "never").exists()


def _distill_config(teacher: str, alpha: float) -> dict:
    student = {k: v for k, v in CONFIG["model"].items() if k != "d_ff"} | {"d_model": 16}
    return {**CONFIG, "model": {"name": "distill", "teacher": teacher, "student": student, "alpha": alpha,
                                "temperature": 2.0},
            "train": {**CONFIG["train"], "max_steps": 6, "eval_interval": 3}}


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_distillation_trains_the_student_only_and_extracts_it(trained: Path) -> None:
    import tomli_w

    student_only = {**CONFIG, "model": _distill_config("run", 0.0)["model"]["student"],
                    "train": _distill_config("run", 0.0)["train"]}
    for name, config in (("d0", _distill_config("run", 0.0)), ("d5", _distill_config("run", 0.5)),
                         ("plain", student_only)):
        (trained / f"{name}.toml").write_text(tomli_w.dumps(config))
        out = deepseek_run("train", f"{name}.toml", "--run-dir", name, "--quiet", cwd=trained)
        assert out.returncode == 0, out.stderr
    d0, d5, plain = (_records(trained / n) for n in ("d0", "d5", "plain"))
    # alpha = 0: the hard-label loss alone, so the very run of the plain student (same seed, data).
    assert [r["loss"] for r in d0 if "loss" in r] == [r["loss"] for r in plain if "loss" in r]
    # alpha = 0.5: training descends the stated mix of the two terms it reports; an evaluation scores
    # the student by its own cross-entropy (val_loss, and the bits per byte and monitor built on it)
    step = [r for r in d5 if "loss" in r][-1]
    assert step["loss"] == pytest.approx(0.5 * step["kl"] + 0.5 * step["ce"], rel=1e-5)
    last = [r for r in d5 if "val_loss" in r][-1]
    assert last["val_loss"] == pytest.approx(last["val_ce"], rel=1e-6) and last["val_kl"] > 0
    # The checkpoint holds the student only: the teacher is neither saved nor trained.
    from deepseek.training.checkpoint import load_model_state, resolve_checkpoint

    keys = load_model_state(resolve_checkpoint(trained / "d5"))
    assert keys and all(k.startswith("student.") for k in keys)
    teacher = load_model_state(resolve_checkpoint(trained / "run"))
    out = deepseek_run("compress", "--checkpoint", "d5", "--method", "distill.student", "--out", "student",
                       "--latency-runs", "0", cwd=trained)
    assert out.returncode == 0, out.stderr
    ev = core_only_cli("eval", "--checkpoint", "student", "--json", cwd=trained)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(last["val_ce"], rel=1e-5)  # the student's own CE
    assert all(torch.equal(v, load_model_state(resolve_checkpoint(trained / "run"))[k]) for k, v in teacher.items())


def test_a_pruned_model_recovers_by_distillation_from_its_original(trained: Path) -> None:
    """student_from: the distill run starts from the pruned model's shape and weights (its first
    validation ce is the pruned model's own loss) and the extracted student keeps the pruned shape."""
    import tomli_w

    out = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.ffn", "--set", "ratio=0.5",
                       "--out", "half-ffn", "--latency-runs", "0", cwd=trained)
    assert out.returncode == 0, out.stderr
    pruned_loss = json.loads(deepseek_run("eval", "--checkpoint", "half-ffn", "--json", cwd=trained).stdout)["val_loss"]
    config = {**CONFIG, "model": {"name": "distill", "teacher": "run", "student_from": "half-ffn", "alpha": 0.5},
              "train": {**CONFIG["train"], "max_steps": 6, "eval_interval": 3, "lr": 1e-3, "warmup_steps": 0}}
    (trained / "recover-half.toml").write_text(tomli_w.dumps(config))
    out = deepseek_run("train", "recover-half.toml", "--run-dir", "recover-half", "--quiet", cwd=trained)
    assert out.returncode == 0, out.stderr
    from deepseek.training.checkpoint import load_model_state, resolve_checkpoint

    state = load_model_state(resolve_checkpoint(trained / "recover-half"))
    assert tuple(state["student.blocks.0.mlp.fc.weight"].shape) == (32, 32)  # d_ff 64 -> 32
    out = deepseek_run("compress", "--checkpoint", "recover-half", "--method", "distill.student", "--out", "recovered-half",
                       "--latency-runs", "0", cwd=trained)
    assert out.returncode == 0, out.stderr
    recovered = json.loads(core_only_cli("eval", "--checkpoint", "recovered-half", "--json", cwd=trained).stdout)
    last = [r for r in _records(trained / "recover-half") if "val_ce" in r][-1]
    assert recovered["val_loss"] == pytest.approx(last["val_ce"], rel=1e-5)
    # Step 0 is not evaluated; the run's first step starts from the pruned weights, so its training
    # ce is close to the pruned model's validation loss, far below a fresh model's (~ln 256 = 5.5).
    first = [r for r in _records(trained / "recover-half") if "ce" in r][0]
    assert abs(first["ce"] - pruned_loss) < 0.5 and pruned_loss < 4.5


@pytest.mark.parametrize(("model", "message"), [
    ({"name": "distill"}, "model.teacher: distill needs a trained teacher"),
    ({"name": "distill", "teacher": "run", "student_from": "nowhere"}, "model.student_from: "),
    ({"name": "distill", "teacher": "run", "alpha": 2.0}, "model.alpha: must be in [0, 1]"),
    ({"name": "distill", "teacher": "run", "student": {"name": "tiny", "vocab_size": 300, "d_model": 16,
                                                       "n_heads": 2, "n_layers": 1, "max_seq_len": 32}},
     "vocab_size 300 differs from the teacher's 256"),
    ({"name": "distill", "teacher": "nowhere"}, "model.teacher: nowhere: no such checkpoint"),
])
def test_bad_distill_configs_are_one_line(monkeypatch: pytest.MonkeyPatch, trained: Path, model: dict,
                                          message: str) -> None:
    import tomli_w

    (trained / "bad.toml").write_text(tomli_w.dumps({**CONFIG, "model": model}))
    code, err, _ = deepseek_here(monkeypatch, trained, "train", "bad.toml", "--run-dir", "badrun", "--quiet")
    assert code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and not (trained / "badrun").exists()


def test_loads_with_names_the_distribution_of_every_model_in_the_result() -> None:
    """A compressed plugin model needs the plugin too: the distributions providing the result's
    model and its ``base`` are named beside the compressor's own needs (core is implied)."""
    from deepseek import hookimpl
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings
    from deepseek_enterprise.compress.compressor import Compressed, loading_needs

    class Acme:
        @hookimpl
        def deepseek_register_models(self, register):  # type: ignore[no-untyped-def]
            register("acme.mlp-lm", "acme_ext.model:MLP")

    host = PluginHost(PluginSettings())
    assert host.register_plugin(Acme(), dist="acme-deepseek-ext").status == "ok"
    quantized = Compressed(None, {"name": "quantized", "scheme": "int8", "base": {"name": "acme.mlp-lm"}},
                           loads_with="deepseek-enterprise with torchao 0.18.0")
    assert loading_needs(host, quantized) == "deepseek-enterprise with torchao 0.18.0 + acme-deepseek-ext"
    assert loading_needs(host, Compressed(None, {"name": "acme.mlp-lm"})) == "deepseek-core + acme-deepseek-ext"
    assert loading_needs(host, Compressed(None, {"name": "tiny", "d_ff": 64})) == "deepseek-core"
    assert loading_needs(host, Compressed(None, {"name": "nobody-has-it"})) == "deepseek-core"
