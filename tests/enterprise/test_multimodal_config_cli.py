"""Core's commands on a multimodal config from the command line: ``deepseek bench latency --config``
times the model, ``deepseek train`` refuses in one line (exit code 2, nothing written) a config
the digits cannot serve and a folder where the run writes a file of its own, and ``deepseek
config show`` fills in the encoder and fusion tables. The ``multimodal`` commands themselves:
test_multimodal_cli.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _inprocess import deepseek_here


def test_bench_latency_times_a_multimodal_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`deepseek bench latency --config` times any model on rows of its dataset's validation
    batches; every variant is compared with eager on the model's logits."""
    config = tmp_path / "mm.toml"
    config.write_text('[model]\nname = "multimodal.classifier"\nfusion = "concat"\n'
                      '[data]\nname = "multimodal.digits"\nbatch_size = 8\neval_batches = 1\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "bench", "latency", "--config", str(config), "--only", "eager",
                                 "--runs", "20", "--batch", "2", "--json", "lat.json")
    assert code == 0, err[-3000:]
    result = json.loads((tmp_path / "lat.json").read_text())
    assert result["info"]["model"] == "multimodal.classifier" and result["info"]["batch"] == 2
    assert result["info"]["command"].startswith(f"deepseek bench latency --config {config} --batch 2")
    (eager,) = result["rows"]
    assert eager["name"] == "eager" and 0 < eager["p10_ms"] <= eager["median_ms"] <= eager["p90_ms"]
    assert eager["max_rel_error"] == 0.0 and eager["top1_agreement"] == 1.0
    # Refusals (each is one line before anything is timed).
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "bench", "latency", "--config", str(config), "--batch", "9")
    assert code == 2 and err.splitlines() == [
        f"error: --batch 9: the validation batches of 'multimodal.digits' ({config}) hold 8 rows; use --batch 8 "
        "or less, or raise data.eval_batches"]
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "bench", "latency", "--config", str(config), "--mode", "decode")
    assert code == 2 and "with --config use --mode forward" in err
    # a model without the cached_decoding capability is refused by name (TrainableModel's own
    # forward_cached, which raises NotImplementedError, does not count)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "bench", "latency", "--model", "multimodal.classifier", "--mode",
                        "decode")
    assert code == 2 and err.splitlines() == [
        "error: --mode decode: model 'multimodal.classifier' has no KV-cache decoding (capability cached_decoding: "
        "new_cache, forward_cached, decode_window); use --mode forward"]
    other = tmp_path / "other.toml"
    other.write_text('[model]\nname = "multimodal.classifier"\n[data]\nname = "text"\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "bench", "latency", "--config", str(other), "--only", "eager")
    assert code == 2 and err.startswith("error: data: batches of dataset TextDataset lack")


TRAIN = """
[model]
name = "multimodal.classifier"
modalities = ["vision", "audio", "text"]
fusion = "late"
fusion_options = {d_model = 8}
vision = {embed_dim = 8, depths = [1], num_heads = [1]}
audio = {d_model = 8, n_heads = 2, n_layers = 1}
text = {d_model = 8, n_heads = 2, n_layers = 1, max_seq_len = 24}
[data]
name = "multimodal.digits"
batch_size = 16
eval_batches = 1
eval_size = 16
[train]
max_steps = 1
[strategy]
name = "single"
device = "cpu"
[logging]
plot = false
progress = false
"""


@pytest.mark.parametrize(("sets", "message"), [
    (["model.num_classes=5"], r"model\.num_classes: 5 is smaller than the 10 classes of dataset 'multimodal\.digits' "
                              r"\(its labels\); remove model\.num_classes to follow the data, or set it >= 10"),
    (["model.num_classes=100000000000"], r"model\.num_classes: must be in 2\.\.100,000, got 100000000000 \(int\)"),
    (['model.modalities=["vision"]', 'data.missing=["vision"]'],
     r"data: no sample of dataset MultimodalDigits has any modality of this model \(vision\) present "
     r"\(data\.missing\?\); leave at least one of them out of data\.missing"),
    (['data.missing=["audio", "audio"]'], r"data\.missing: \['audio', 'audio'\] names 'audio' twice; name at most "
                                          r"two of vision, audio, text, each once"),
    # a misspelt modality is named, with the one it is closest to
    (['data.missing=["audoi"]'], r"data\.missing: \['audoi'\] names 'audoi', not a modality \(did you mean "
                                 r"'audio'\?\); name at most two of vision, audio, text, each once"),
    (['model.modalities=["vision", "Audio"]'], r"model\.modalities: \['vision', 'Audio'\] names 'Audio', not a "
                                               r"modality \(did you mean 'audio'\?\); give distinct modalities "
                                               r"among vision, audio, text"),
    (['model.modalities=["text", "text"]'], r"model\.modalities: \['text', 'text'\] names 'text' twice; give distinct "
                                            r"modalities among vision, audio, text"),
    (["model.modalities=[]"], r"model\.modalities: \[\] is empty; give distinct modalities among vision, audio, text"),
    (["data.eval_size=99999999999"], r"data\.eval_size: must be in 1\.\.65536, got 99999999999 \(int\)"),
    (["data.max_frames=10000000000"], r"data\.max_frames: must be in 92\.\.4096 \(the longest recording has 92 "
                                      r"frames; more is only padding\), got 10000000000 \(int\)"),
    (["data.text_bytes=100000"], r"data\.text_bytes: must be in 12\.\.4096 .*got 100000 \(int\)"),
    # a misspelt component is named by its key, as core names model.name's
    (["model.fusion=cross_atention"], r"model\.fusion: unknown fusion 'cross_atention'; did you mean "
                                      r"'cross_attention'\? available: concat, cross_attention, late .*"),
    (['model.fusion=""'], r"model\.fusion: expected the name of a registered fusion \(a string\), got ''; "
                          r"'deepseek plugins list' names them"),
    (["model.vision_encoder=vision.swn"], r"model\.vision_encoder: unknown encoder 'vision\.swn'; did you mean "
                                          r"'vision\.swin'\? .*"),
    (["model.vision_encoder=audio.conv_transformer"], r"model\.vision_encoder: 'audio\.conv_transformer' is not a "
                                                      r"vision encoder; give a registered 'vision\.\*' encoder: "
                                                      r"vision\.swin \(see 'deepseek plugins list'\)$"),
    # the component tables are checked by the component's Options when the config loads
    (["model.fusion=cross_attention", "model.fusion_options.hiden=8"], r"model\.fusion_options\.hiden: unknown key \(did you mean 'hidden'\?\).*"),
    (['model.vision.timm_name="swin_tiny_patch4_window7_22"'],
     r"model\.vision\.timm_name: 'swin_tiny_patch4_window7_22' is not a timm Swin model \(did you mean "
     r"'swin_tiny_patch4_window7_224'\?\); use a name such as 'swin_tiny_patch4_window7_224' "
     r"\(timm\.list_models\('swin\*'\) lists them\)"),
    (["model.audio.n_layer=1"], r"model\.audio\.n_layer: unknown key \(did you mean 'n_layers'\?\).*"),
    # every unknown key of a component's table in the one line (was the first, one per run)
    (["model.vision.img_sz=8", "model.vision.depthz=[1]", "model.vision.zzz=1"],
     r"model\.vision: unknown keys img_sz \(did you mean 'img_size'\?\), depthz \(did you mean 'depths'\?\), zzz; "
     r"allowed keys: depths, drop_path_rate, embed_dim, img_size, img_width, in_chans, mlp_ratio, num_heads, "
     r"patch_size, timm_name, weights, window_size"),
    (["model.audio.n_layer=1", "model.audio.d_modle=8"],
     r"model\.audio: unknown keys n_layer \(did you mean 'n_layers'\?\), d_modle \(did you mean 'd_model'\?\); "
     r"allowed keys: backbone, conv_layers, d_ff, d_model, dropout, front_end, hop_length, input, max_frames, "
     r"n_features, n_heads, n_layers, sample_rate"),
    (["model.fusion=cross_attention", "model.fusion_options.hiden=8", "model.fusion_options.head=2"],
     r"model\.fusion_options: unknown keys hiden \(did you mean 'hidden'\?\), head \(did you mean 'heads'\?\); "
     r"allowed keys: d_model, dropout, heads, hidden, joint, late_residual, layers, queries"),
    # heads that do not divide the width they split: timm's Swin narrowed each block's attention silently
    (["model.vision.num_heads=[3]"], r"model\.vision\.num_heads: \[3\]: stage 0 is 8 wide \(embed_dim 8 x 1\), not "
                                     r"divisible by num_heads\[0\]=3; give num_heads\[0\] among 1, 2, 4, 8, or change "
                                     r"embed_dim"),
    (["model.vision.depths=[1, 1]", "model.vision.num_heads=[1, 3]"],
     r"model\.vision\.num_heads: \[1, 3\]: stage 1 is 16 wide \(embed_dim 8 x 2\), not divisible by "
     r"num_heads\[1\]=3; give num_heads\[1\] among 1, 2, 4, 8, 16, or change embed_dim"),
    (["model.audio.n_heads=3"], r"model\.audio\.n_heads: d_model=8 is not divisible by n_heads=3; give n_heads among "
                                r"1, 2, 4, 8"),
    (["model.fusion=cross_attention", "model.fusion_options.heads=3"],
     r"model\.fusion_options\.heads: d_model=8 is not divisible by heads=3; give heads among 1, 2, 4, 8"),
    # the counts that fit, up to 64 as core's gpt lists them: all of a width's divisors were listed,
    # and d_model = 10**18 searched for them past any timeout (the command hung)
    (["model.audio.d_model=768", "model.audio.n_heads=5"],
     r"model\.audio\.n_heads: d_model=768 is not divisible by n_heads=5; give n_heads among 1, 2, 3, 4, 6, 8, 12, "
     r"16, 24, 32, 48, 64"),
    (["model.fusion=cross_attention", "model.fusion_options.d_model=1000000000000000000", "model.fusion_options.heads=3"],
     r"model\.fusion_options\.heads: d_model=1000000000000000000 is not divisible by heads=3; give heads among 1, 2, "
     r"4, 5, 8, 10, 16, 20, 25, 32, 40, 50, 64"),
    # another fusion method's key (a resumed run's saved table after --set model.fusion=...): which one takes it
    (["model.fusion=late", "model.fusion_options.dropout=0.1"],
     r"model\.fusion_options\.dropout: unknown key for fusion 'late'; fusion 'cross_attention' \(deepseek-enterprise\) "
     r"takes it: set model\.fusion = \"cross_attention\", or remove model\.fusion_options\.dropout "
     r"\(--set '~model\.fusion_options\.dropout'\)"),
    # every such key in the one line (a user swapping parts learned the keys to drop one run at a time)
    (["model.fusion=late", "model.fusion_options.dropout=0.1", "model.fusion_options.heads=2"],
     r"model\.fusion_options: unknown keys for fusion 'late': dropout, heads \(fusion 'cross_attention' "
     r"\(deepseek-enterprise\) takes them\); set model\.fusion = \"cross_attention\", or remove them "
     r"\(--set '~model\.fusion_options\.dropout' --set '~model\.fusion_options\.heads'\)"),
    (["model.fusion=late", "model.fusion_options.dropout=0.1", "model.fusion_options.hiden=2"],
     r"model\.fusion_options: unknown keys for fusion 'late': dropout \(fusion 'cross_attention' "
     r"\(deepseek-enterprise\) takes it\), hiden; set model\.fusion = \"cross_attention\" and remove hiden "
     r"\(--set '~model\.fusion_options\.hiden'\), or remove them all \(--set '~model\.fusion_options\.dropout' "
     r"--set '~model\.fusion_options\.hiden'\)"),
    # torch's own errors from inside the components: exit 1, "a bug in the plugin" (or -1 accepted)
    (["model.fusion=cross_attention", "model.fusion_options.dropout=5"],
     r"model\.fusion_options\.dropout: must be in \[0, 1\), got 5 \(int\)"),
    (["model.vision.drop_path_rate=2"], r"model\.vision\.drop_path_rate: must be in \[0, 1\), got 2 \(int\)"),
    (["model.vision.drop_path_rate=-1"], r"model\.vision\.drop_path_rate: must be in \[0, 1\), got -1 \(int\)"),
])
def test_train_refuses_a_config_the_digits_cannot_serve(tmp_path: Path, sets: list[str], message: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Each was an internal error (a label beyond num_classes), a run that trained on nothing (every
    modality missing), a hang or an out-of-memory error (a huge eval_size or padding)."""
    (tmp_path / "mm.toml").write_text(TRAIN)
    overrides = [arg for s in sets for arg in ("--set", s)]
    code, err, out = deepseek_here(monkeypatch, tmp_path, "train", "mm.toml", "--run-dir", "runs/x", *overrides)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert re.fullmatch(f"error: {message}", err), err
    assert not (tmp_path / "runs").exists()


def test_config_show_fills_in_the_encoder_and_fusion_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key the encoders and the fusion method run with, their defaults included; a table of
    a modality the model does not use is left as given."""
    import tomllib

    (tmp_path / "mm.toml").write_text(TRAIN)
    code, err, out = deepseek_here(monkeypatch, tmp_path, "config", "show", "mm.toml", "--set", "model.fusion=concat",
                                   "--set", "model.fusion_options.hidden=16", "--set", 'model.modalities=["vision", "text"]')
    assert code == 0, err
    model = tomllib.loads(out)["model"]
    assert model["fusion_options"]["hidden"] == 16 and "joint" in model["fusion_options"]
    assert {"embed_dim", "window_size", "depths"} <= set(model["vision"]) and model["vision"]["depths"] == [1]
    assert {"d_model", "n_layers", "norm_eps"} <= set(model["text"])
    assert model.get("audio", {}) == tomllib.loads(TRAIN)["model"].get("audio", {})  # not in use: as given


@pytest.mark.parametrize("name", ["splits.json", "confusion.json", "confusion.png"])
def test_a_folder_where_the_run_writes_a_file_of_its_own_is_one_line(tmp_path: Path, name: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's writes failed with IsADirectoryError: exit 1 as 'a bug in the plugin' (splits.json at
    the start, confusion.json at the first evaluation after training steps). The refusal leaves
    nothing behind in the existing folder."""
    (tmp_path / "mm.toml").write_text(TRAIN)
    (tmp_path / "runs" / "x" / name).mkdir(parents=True)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", "mm.toml", "--run-dir", "runs/x")
    assert code == 2 and err.strip().splitlines() == [
        f"error: {tmp_path / 'runs' / 'x' / name}: is a folder where the run writes its {name}; move it away or pick "
        "another --run-dir"], err
    # the folder as it was (config.toml, metrics.jsonl and .lock were left in it): only the refused one
    assert sorted(p.name for p in (tmp_path / "runs" / "x").iterdir()) == [name]
