"""``deepseek export --format hf`` and ``deepseek import-hf`` with deepseek-core alone (no
transformers): the files an export writes (GPT-2 names, Conv1D transposes, config.json), an
export imported back gives the same logits, and every hostile input is one line, exit 2, nothing
written. tests/ecosystem/test_hf_gpt2.py checks the folders against transformers itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hostile_cli import TINY, Hostile, invoke
from safetensors import safe_open
from safetensors.torch import save_file

from deepseek.interop.gpt2 import export_problem
from deepseek.models.gpt import GPTConfig
from deepseek.training.checkpoint import read_weights_metadata
from deepseek.training.inference import load_trained
from deepseek.training.metrics import read_metrics


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory: pytest.TempPathFactory, trained_run: Path, core_host) -> Path:
    """The trained run exported as a GPT-2 folder (read-only for the tests)."""
    out = tmp_path_factory.mktemp("hf") / "gpt2"
    outcome = invoke(["export", "--checkpoint", str(trained_run), "--format", "hf", "--out", str(out)], core_host)
    assert outcome.code == 0, outcome.stderr
    assert "raw UTF-8 bytes (ids 0..255)" in outcome.stdout
    return out


def test_export_writes_gpt2_names_and_config(hf_export: Path, trained_run: Path) -> None:
    assert sorted(p.name for p in hf_export.iterdir()) == ["config.json", "model.safetensors"]
    model, config, _ = load_trained(trained_run)
    c = config.model.options
    cfg = json.loads((hf_export / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert (cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["n_positions"], cfg["n_inner"], cfg["vocab_size"]) == (
        c.d_model, c.n_heads, c.n_layers, c.max_seq_len, c.d_ff, c.vocab_size)
    assert cfg["activation_function"] == "gelu_new" and cfg["tie_word_embeddings"] is True
    assert cfg["torch_dtype"] == "float32" and cfg["bos_token_id"] is None
    hf = _tensors(hf_export / "model.safetensors")
    ours = model.state_dict()
    assert "lm_head.weight" not in hf and len(hf) == 4 + 12 * c.n_layers
    assert torch.equal(hf["transformer.h.0.attn.c_attn.weight"], ours["blocks.0.attn.qkv.weight"].t())
    assert hf["transformer.h.0.mlp.c_fc.weight"].shape == (c.d_model, c.d_ff)
    assert torch.equal(hf["transformer.h.0.mlp.c_proj.bias"], ours["blocks.0.mlp.proj.bias"])
    assert torch.equal(hf["transformer.wte.weight"], ours["wte.weight"])


def test_export_then_import_gives_the_same_model(hf_export: Path, trained_run: Path, tmp_path: Path,
                                                 core_host) -> None:
    out = tmp_path / "back"
    outcome = invoke(["import-hf", str(hf_export), "--out", str(out)], core_host)
    assert outcome.code == 0, outcome.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "model.safetensors"]
    assert json.loads(read_weights_metadata(out / "model.safetensors")["model"])["name"] == "gpt"
    assert f'init_from = "{out.resolve() / "model.safetensors"}"' in (out / "config.toml").read_text()
    a, _, _ = load_trained(trained_run)
    b, config, _ = load_trained(out / "model.safetensors", host=core_host)
    assert config.model.name == "gpt"
    x = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_export_bf16(trained_run: Path, tmp_path: Path, core_host) -> None:
    out = tmp_path / "bf16"
    outcome = invoke(["export", "--checkpoint", str(trained_run), "--format", "hf", "--dtype", "bf16",
                      "--out", str(out)], core_host)
    assert outcome.code == 0, outcome.stderr
    assert {t.dtype for t in _tensors(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_non_gpt_models_are_named() -> None:
    class ClassifierOptions:
        pass

    line = export_problem("multimodal.classifier", ClassifierOptions())
    assert line is not None and "'multimodal.classifier' is not a GPT" in line and "ClassifierOptions" in line
    assert export_problem("tiny", GPTConfig(d_model=32, n_heads=2)) is None


# ----------------------------------------------------------------------------- hostile


def _train(hostile: Hostile, run: str, *sets: str) -> Path:
    args = [a for s in sets for a in ("--set", s)]
    outcome = hostile.run("train", *TINY, *args, "--run-dir", run)
    assert outcome.code == 0, outcome.stderr
    return hostile.work / run


@pytest.mark.parametrize(("sets", "expect"), [
    (["model.bias=false"], ["model.bias = false", "GPT-2 has a bias"]),
    (["model.head_dim=8"], ["model.head_dim = 8", "pruned heads"]),
])
def test_export_refuses_what_gpt2_cannot_hold(hostile: Hostile, sets: list[str], expect: list[str]) -> None:
    run = _train(hostile, "run", *sets)
    hostile.refused("export", "--checkpoint", str(run), "--format", "hf", "--out", "hf", expect=expect)
    assert not (run / "hf").exists()


def test_export_refuses_a_used_out_and_dtype_without_hf(hostile: Hostile, trained_run: Path) -> None:
    (hostile.work / "full").mkdir()
    (hostile.work / "full" / "x").write_text("x")
    hostile.refused("export", "--checkpoint", str(trained_run), "--format", "hf", "--out", "full",
                    expect=["--out", "not empty"])
    hostile.refused("export", "--checkpoint", str(trained_run), "--format", "hf", "--out", "full/x/y",
                    expect=["--out", "is a file"])
    hostile.refused("export", "--checkpoint", str(trained_run), "--dtype", "bf16", "--out", "m.pt2",
                    expect=["--dtype applies to --format hf only"])


def _source(hostile: Hostile, hf_export: Path, name: str = "src") -> Path:
    src = hostile.work / name
    shutil.copytree(hf_export, src)
    return src


def _edit_config(src: Path, **changes: object) -> None:
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(changes)
    (src / "config.json").write_text(json.dumps(cfg))


def _edit_tensors(src: Path, change) -> None:
    tensors = _tensors(src / "model.safetensors")
    change(tensors)
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})


def _import_refused(hostile: Hostile, src: Path, expect: list[str]) -> None:
    hostile.refused("import-hf", str(src), "--out", "out", expect=expect)
    assert not (hostile.work / "out").exists()


def test_import_refuses_missing_and_wrong_folders(hostile: Hostile, hf_export: Path) -> None:
    _import_refused(hostile, hostile.work / "nothing", ["nothing does not exist"])
    src = _source(hostile, hf_export)
    _import_refused(hostile, src / "config.json", ["is a file", "give the folder"])
    (src / "config.json").unlink()
    _import_refused(hostile, src, ["has no config.json"])
    (src / "config.json").mkdir()  # a folder under a file's name: not taken for a missing file
    _import_refused(hostile, src, ["config.json is not a regular file (a folder, device, FIFO or socket)"])


def test_a_tokenizer_json_folder_is_refused_not_imported_as_bytes(hostile: Hostile, hf_export: Path) -> None:
    src = _source(hostile, hf_export)
    (src / "tokenizer.json").mkdir()  # was imported without a word, training on byte tokens
    _import_refused(hostile, src, ["tokenizer.json is not a regular file (a folder, device, FIFO or socket); give "
                                   "the file save_pretrained writes there, or remove it"])


def test_import_refuses_pickles(hostile: Hostile, hf_export: Path) -> None:
    src = _source(hostile, hf_export)
    (src / "model.safetensors").rename(src / "pytorch_model.bin")
    _import_refused(hostile, src, ["pytorch_model.bin", "pickle", "re-save it with safetensors"])


@pytest.mark.parametrize(("changes", "expect"), [
    ({"model_type": "llama"}, ["model_type is 'llama'", "GPT-2 models"]),
    ({"n_embd": None}, ["n_embd must be a positive integer, got None"]),
    ({"n_layer": "2"}, ["n_layer must be a positive integer, got '2'"]),
    ({"n_head": 3}, ["not divisible by n_head = 3"]),
    # named by the file's keys (was "model: vocab_size=..., max_seq_len=... make 6.4e+13 parameters")
    ({"n_positions": 10**12}, ["config.json: its sizes (vocab_size, n_embd, n_head, n_layer, n_inner, n_positions)",
                               "parameters"]),
    ({"activation_function": "relu"}, ["activation_function 'relu'", "gelu_new"]),
    ({"layer_norm_epsilon": -1}, ["layer_norm_epsilon must be a number > 0"]),
    ({"scale_attn_by_inverse_layer_idx": True}, ["scale_attn_by_inverse_layer_idx = true"]),
    ({"add_cross_attention": True}, ["add_cross_attention = true"]),
    ({"tie_word_embeddings": "yes"}, ["tie_word_embeddings must be true or false"]),
    ({"tie_word_embeddings": False}, ["lm_head.weight is missing", "tie_word_embeddings = false"]),
    ({"n_layer": 2}, ["transformer.h.1.ln_1.weight is missing"]),
    ({"resid_pdrop": 1.5}, ["resid_pdrop must be a number in [0, 1)"]),
])
def test_import_refuses_bad_config_json(hostile: Hostile, hf_export: Path, changes: dict, expect: list[str]) -> None:
    src = _source(hostile, hf_export)
    _edit_config(src, **changes)
    _import_refused(hostile, src, ["config.json", *expect])


def test_import_refuses_bad_files(hostile: Hostile, hf_export: Path) -> None:
    src = _source(hostile, hf_export)
    (src / "config.json").write_text("{not json")
    _import_refused(hostile, src, ["config.json: not valid JSON"])
    (src / "config.json").write_text("[1, 2]")
    _import_refused(hostile, src, ["expected a JSON object"])
    shutil.copy(hf_export / "config.json", src / "config.json")
    (src / "model.safetensors").write_bytes(b"\x00" * 40)
    _import_refused(hostile, src, ["model.safetensors: not a readable safetensors file"])


@pytest.mark.parametrize(("change", "expect"), [
    (lambda t: t.update({"transformer.h.0.mlp.c_fc.weight": torch.zeros(32, 100)}),
     ["tensor transformer.h.0.mlp.c_fc.weight has shape (32, 100), config.json says (32, 128)"]),
    (lambda t: t.update({"score.weight": torch.zeros(2, 32)}), ["unexpected tensor score.weight"]),
    (lambda t: t.pop("transformer.ln_f.bias"), ["tensor transformer.ln_f.bias is missing"]),
    (lambda t: t.update({"transformer.ln_f.bias": torch.zeros(32, dtype=torch.int64)}),
     ["transformer.ln_f.bias holds torch.int64"]),
    # imported, then every command refused the run as a damaged checkpoint (advising an earlier one)
    (lambda t: t["transformer.ln_f.weight"].__setitem__(3, float("nan")),
     ["tensor 'transformer.ln_f.weight' holds 1 NaN or infinite value(s) of 32; these weights cannot be used"]),
])
def test_import_refuses_bad_tensors(hostile: Hostile, hf_export: Path, change, expect: list[str]) -> None:
    src = _source(hostile, hf_export)
    _edit_tensors(src, change)
    _import_refused(hostile, src, ["model.safetensors", *expect])


def test_import_refuses_a_used_out(hostile: Hostile, hf_export: Path) -> None:
    (hostile.work / "out").mkdir()
    (hostile.work / "out" / "keep.txt").write_text("mine")
    hostile.refused("import-hf", str(hf_export), "--out", "out", expect=["--out", "not empty"])


def test_import_takes_the_hub_layout(hostile: Hostile, hf_export: Path) -> None:
    """Original GPT-2 files: names without ``transformer.``, causal-mask buffers, lm_head stored."""
    src = _source(hostile, hf_export)

    def hub(t: dict[str, torch.Tensor]) -> None:
        for k in list(t):
            t[k.removeprefix("transformer.")] = t.pop(k)
        t["h.0.attn.bias"] = torch.ones(1, 1, 32, 32)
        t["lm_head.weight"] = t["wte.weight"].clone()

    _edit_tensors(src, hub)
    outcome = hostile.run("import-hf", str(src), "--out", "out")
    assert outcome.code == 0, outcome.stderr
    a, _, _ = load_trained(hostile.work / "out" / "model.safetensors", host=hostile.host)
    assert torch.equal(a.wte.weight, _tensors(hf_export / "model.safetensors")["transformer.wte.weight"])


def test_import_reads_shards_and_half_precision(hostile: Hostile, hf_export: Path) -> None:
    """Shards with model.safetensors.index.json, fp16 tensors, differing dropouts (noted)."""
    src = _source(hostile, hf_export)
    tensors = {k: v.half() for k, v in _tensors(src / "model.safetensors").items()}
    (src / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:5], "model-00002-of-00002.safetensors": names[5:]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(src / file), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    _edit_config(src, attn_pdrop=0.2, resid_pdrop=0.1, embd_pdrop=0.1)
    outcome = hostile.run("import-hf", str(src), "--out", "out")
    assert outcome.code == 0, outcome.stderr
    assert "took resid_pdrop = 0.1" in outcome.stdout
    model, config, _ = load_trained(hostile.work / "out" / "model.safetensors", host=hostile.host)
    assert config.model.options.dropout == 0.1 and model.wte.weight.dtype == torch.float32
    assert torch.equal(model.blocks[0].attn.qkv.weight, tensors["transformer.h.0.attn.c_attn.weight"].float().t())
    shutil.rmtree(hostile.work / "out")
    (src / "model-00002-of-00002.safetensors").unlink()
    _import_refused(hostile, src, ["model.safetensors.index.json", "model-00002-of-00002.safetensors",
                                   "copy every shard"])


def test_import_checks_the_tokenizer(hostile: Hostile, hf_export: Path) -> None:
    src = _source(hostile, hf_export)
    (src / "tokenizer.json").write_text("{}")
    _import_refused(hostile, src, ["tokenizer.json: not a tokenizers tokenizer.json"])
    vocab = {"a": 0, "b": 1, "z": 400}  # the model's vocab_size is 256
    (src / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": []}}))
    _import_refused(hostile, src, ["token id 400", "vocab_size is 256"])


def test_a_gpt2_folder_is_an_init_from(hostile: Hostile, hf_export: Path, trained_run: Path) -> None:
    outcome = hostile.run("train", *TINY, "--set", f"train.init_from={json.dumps(str(hf_export))}",
                          "--set", "model.name=gpt", "--run-dir", "run")
    assert outcome.code == 0, outcome.stderr
    records = read_metrics(hostile.work / "run" / "metrics.jsonl")
    start = next(r for r in records if r["step"] == 0 and "val_loss" in r)
    from deepseek.training.inference import evaluate_model

    model, config, _ = load_trained(trained_run, need_data=True)
    assert start["val_loss"] == pytest.approx(evaluate_model(model, config, 1)["val_loss"], rel=1e-6)
    hostile.refused("train", *TINY, "--set", f"train.init_from={json.dumps(str(hf_export))}",
                    "--set", "model.n_layers=2", "--run-dir", "run2",
                    expect=["train.init_from", "n_layers = 1 but model.n_layers = 2", "set model.n_layers = 1"])


def test_a_fifo_config_json_in_an_init_from_folder_is_refused_not_waited_on(hostile: Hostile, hf_export: Path) -> None:
    """``train.init_from`` naming a folder whose config.json is a FIFO: telling a GPT-2 folder from
    a run folder read it, and blocked the command for good (no writer comes); now one line naming it."""
    import os
    import signal
    import threading

    src = _source(hostile, hf_export)
    (src / "config.json").unlink()
    os.mkfifo(src / "config.json")

    def stuck(*_: object) -> None:
        pytest.fail("reading the FIFO config.json blocked")  # not an OSError, which the reader catches

    handler = signal.signal(signal.SIGALRM, stuck)
    timer = threading.Timer(60, signal.pthread_kill, (threading.get_ident(), signal.SIGALRM))
    timer.start()
    try:
        hostile.refused("train", *TINY, "--set", f"train.init_from={json.dumps(str(src))}", "--run-dir", "r",
                        expect=[f"{src / 'config.json'}: cannot be read as JSON (not a regular file (a FIFO, "
                                "device or socket)); give a folder written by save_pretrained, or remove the file"])
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, handler)
    assert not (hostile.work / "r").exists()
