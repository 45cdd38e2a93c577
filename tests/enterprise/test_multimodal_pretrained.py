"""``[model] pretrained`` / ``freeze_pretrained``: a fused model starts with exactly the unimodal
runs' encoders, projections and own classifiers (everything else as without them), frozen parts
stay fixed through training, a bad source is one line (exit code 2 from ``deepseek train``), and
a study over given unimodal runs of other encoder shapes is refused before it starts. The study's
recipes that train the unimodal models and hand them on: test_multimodal_pretrained_study.py."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from _inprocess import deepseek_here

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.training.build import build_model
from deepseek.training.checkpoint import load_model_state, resolve_checkpoint
from deepseek.training.trainer import Trainer
from deepseek_enterprise.pretrained import modality_prefixes

MODALITIES = ("vision", "audio", "text")
TINY = {"vision": {"embed_dim": 16, "depths": [1, 1]}, "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}


pytestmark = pytest.mark.usefixtures("one_thread")


def config(runs: Path, name: str, model: dict[str, Any], steps: int = 2) -> dict[str, Any]:
    return {
        "model": {"name": "multimodal.classifier", **TINY, **model,
                  "fusion_options": {"d_model": 16, **({} if model.get("fusion") == "late" else {"hidden": 16}),
                                     **model.get("fusion_options", {})}},
        "data": {"name": "multimodal.digits", "batch_size": 16, "eval_batches": 1, "eval_size": 16},
        "train": {"max_steps": steps, "warmup_steps": 1, "lr": 1e-2, "eval_interval": steps, "seed": 3},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "checkpoint": {"interval": 0, "at_end": True},
        "logging": {"progress": False, "plot": False, "runs_dir": str(runs), "name": name},
    }


@pytest.fixture(scope="module")
def unimodal(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three unimodal runs of 2 steps (tiny encoders) and their final weights."""
    runs = tmp_path_factory.mktemp("runs")
    out: dict[str, Any] = {"runs": runs, "folders": {}, "weights": {}}
    for m in MODALITIES:
        result = Trainer(config_from_dict(config(runs, m, {"modalities": [m], "fusion": "late"})), quiet=True).fit()
        out["folders"][m] = str(result.run_dir)
        out["weights"][m] = load_model_state(resolve_checkpoint(result.run_dir))
    return out


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_the_fused_model_starts_with_exactly_the_unimodal_parts(unimodal: dict[str, Any], tmp_path: Path,
                                                                fusion: str) -> None:
    fused = build_model(config_from_dict(config(tmp_path, "f", {"fusion": fusion,
                                                                "pretrained": unimodal["folders"]})))
    plain = build_model(config_from_dict(config(tmp_path, "f", {"fusion": fusion})))
    state, random = fused.state_dict(), plain.state_dict()
    copied = 0
    for m in MODALITIES:
        theirs = unimodal["weights"][m]
        for k, v in state.items():
            if k.startswith(modality_prefixes(m)):
                assert torch.equal(v, theirs[k]), k
                assert not torch.equal(v, random[k]), k  # trained for 2 steps: not the random start
                copied += 1
    assert copied == sum(1 for k in state if k.startswith(tuple(p for m in MODALITIES for p in modality_prefixes(m))))
    # Everything else (the fusion's MLP, its table, attention) starts as it would without them.
    rest = [k for k in state if not k.startswith(tuple(p for m in MODALITIES for p in modality_prefixes(m)))]
    assert rest and all(torch.equal(state[k], random[k]) for k in rest)
    assert all(p.requires_grad for p in fused.parameters())


def test_frozen_parts_stay_fixed_and_the_rest_trains(unimodal: dict[str, Any], tmp_path: Path) -> None:
    cfg = config(tmp_path, "frozen", {"fusion": "concat", "pretrained": {"audio": unimodal["folders"]["audio"]},
                                       "freeze_pretrained": True, "aux_loss_weight": 0.5}, steps=3)
    result = Trainer(config_from_dict(cfg), quiet=True).fit()
    after = load_model_state(resolve_checkpoint(result.run_dir))
    start = build_model(config_from_dict(cfg)).state_dict()
    audio = [k for k in after if k.startswith(modality_prefixes("audio"))]
    assert audio and all(torch.equal(after[k], unimodal["weights"]["audio"][k]) for k in audio)
    # vision was not named: it starts random and trains, like the fusion's MLP.
    for prefix in ("encoders.vision.", "fusion.mlp."):
        names = [k for k in after if k.startswith(prefix) and after[k].is_floating_point()]
        assert any(not torch.equal(after[k], start[k]) for k in names), prefix


def test_bad_sources_are_one_line(unimodal: dict[str, Any], tmp_path: Path) -> None:
    folders = unimodal["folders"]

    def refused(model: dict[str, Any], message: str) -> None:
        with pytest.raises(ConfigError, match=message) as info:
            build_model(config_from_dict(config(tmp_path, "bad", {"fusion": "concat", **model})))
        assert "\n" not in str(info.value)

    refused({"pretrained": {"vision": str(tmp_path / "nowhere")}},
            r"^model\.pretrained\.vision: .*nowhere: no such checkpoint or run folder; pass a run folder")
    refused({"pretrained": {"vision": folders["audio"]}},
            r"^model\.pretrained\.vision: .* is a run of modalities \['audio'\]; give a run of modalities = \[\"vision\"\]$")
    refused({"pretrained": {"smell": folders["audio"]}}, r"^model\.pretrained\.smell: not a modality of this model")
    refused({"pretrained": {"text": ""}}, r"^model\.pretrained\.text: '' is not a path")
    refused({"freeze_pretrained": True}, r"^model\.freeze_pretrained: true without model\.pretrained")
    refused({"pretrained": {"audio": folders["audio"]}, "audio": {"d_model": 32, "n_heads": 2, "n_layers": 1}},
            r"^model\.pretrained\.audio: .* used model\.audio\.d_model = 16, this model 32; give a run "
            r"with the same \[model\.audio\] keys$")
    refused({"pretrained": {"audio": folders["audio"]}, "fusion_options": {"d_model": 8}},
            r"^model\.pretrained\.audio: .* does not fit this model \(shape \(10, 16\) of fusion\.heads\.audio\.weight "
            r"where this model has \(10, 8\)\); give a run with the same encoder keys and fusion_options\.d_model$")
    refused({"fusion": "late", "pretrained": folders, "freeze_pretrained": True},
            r"^model\.freeze_pretrained: every parameter of this model comes from model\.pretrained, so nothing "
            r"would train; set freeze_pretrained = false")
    fused = Trainer(config_from_dict(config(tmp_path, "tri", {"fusion": "concat"})), quiet=True).fit().run_dir
    refused({"pretrained": {"vision": str(fused)}},
            r"^model\.pretrained\.vision: .* is a run of modalities \['vision', 'audio', 'text'\]")


def test_a_run_of_another_encoder_is_refused_with_a_hint_in_toml(unimodal: dict[str, Any], tmp_path: Path) -> None:
    """'... or set model.vision_encoder = <theirs>' pastes into a config file or after --set: TOML's
    "vision.swin" (was Python's 'vision.swin'); an encoder name the run's files hold as something
    else (read from disk, held like a config's value) is one line, not a hint or a crash."""
    import shutil
    from types import SimpleNamespace

    import tomllib

    from deepseek.training.checkpoint import TRAINER_FILE
    from deepseek_enterprise.pretrained import check_source

    run = unimodal["folders"]["vision"]
    with pytest.raises(ConfigError, match=r"^model\.pretrained\.vision: .* used encoder 'vision\.swin', this model "
                                          r"'vision\.acme_patches'; give a run of the same encoder or set ") as info:
        check_source("vision", run, SimpleNamespace(vision_encoder="vision.acme_patches", vision={}))
    hint = str(info.value).split(" or set ", 1)[1]
    assert hint == 'model.vision_encoder = "vision.swin"'
    assert tomllib.loads(hint) == {"model": {"vision_encoder": "vision.swin"}}

    copy = shutil.copytree(resolve_checkpoint(run), tmp_path / "step")
    state = json.loads((copy / TRAINER_FILE).read_text())
    state["config"]["model"]["vision_encoder"] = None
    (copy / TRAINER_FILE).write_text(json.dumps(state))
    commit = json.loads((copy / "commit.json").read_text())  # edited, not damaged
    commit["files"][TRAINER_FILE] = (copy / TRAINER_FILE).stat().st_size
    commit["crc32"][TRAINER_FILE] = f"{zlib.crc32((copy / TRAINER_FILE).read_bytes()):08x}"
    (copy / "commit.json").write_text(json.dumps(commit))
    with pytest.raises(ConfigError, match=r"^model\.pretrained\.vision: .*step records model\.vision_encoder = None, "
                                          r"not an encoder name; give a run folder of deepseek train$"):
        check_source("vision", str(copy), SimpleNamespace(vision_encoder="vision.swin", vision={}))


def test_integer_weights_in_a_source_are_refused_not_copied_truncated(unimodal: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    """A source whose float tensor was saved as integers (edited, its commit record made to match)
    was copied into the float parameter as whole numbers, the model then trained on them without a
    word; ``deepseek eval`` of the same folder refuses it."""
    import shutil
    import zlib

    from deepseek.training.checkpoint_io import load_tensors, save_tensors

    source = tmp_path / "audio"
    shutil.copytree(unimodal["folders"]["audio"], source)
    step = resolve_checkpoint(source)
    tensors, meta = load_tensors(step / "model.safetensors", "model weights")
    name = next(k for k in sorted(tensors) if k.startswith("encoders.audio.") and tensors[k].is_floating_point())
    tensors[name] = (tensors[name] * 100).to(torch.int32)
    save_tensors(step / "model.safetensors", tensors, meta)
    record = json.loads((step / "commit.json").read_text())
    record["files"]["model.safetensors"] = (step / "model.safetensors").stat().st_size
    record["crc32"]["model.safetensors"] = f"{zlib.crc32((step / 'model.safetensors').read_bytes()):08x}"
    (step / "commit.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError) as info:
        build_model(config_from_dict(config(tmp_path, "f", {"fusion": "concat", "pretrained": {"audio": str(source)}})))
    assert str(info.value) == (
        f"model.pretrained.audio: {step}: {name!r} holds torch.int32 values where the model keeps torch.float32; the "
        "checkpoint is damaged, use an earlier checkpoint of the run (pass its checkpoints/step-N folder) or start a "
        "fresh run")


def test_a_model_built_on_the_meta_device_checks_its_sources_without_reading_weights(
        unimodal: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``deepseek tune`` builds to check a search space: the sources' configs and weight
    shapes (from the files' headers) are checked, no weight file is read."""
    import deepseek.training.checkpoint as checkpoint

    def no_reading(path: Any) -> None:
        raise AssertionError(f"weights read from {path}")

    monkeypatch.setattr(checkpoint, "load_model_state", no_reading)
    meta = torch.device("meta")
    model = build_model(config_from_dict(config(tmp_path, "f", {"fusion": "concat", "pretrained": unimodal["folders"],
                                                                "freeze_pretrained": True})), create_on=meta)
    assert not any(p.requires_grad for p in model.encoders["vision"].parameters())  # frozen as for real
    with pytest.raises(ConfigError, match=r"^model\.pretrained\.audio: .* does not fit this model \(shape \(10, 16\) "
                                          r"of fusion\.heads\.audio\.weight where this model has \(10, 8\)\)"):
        build_model(config_from_dict(config(tmp_path, "f", {"fusion": "concat", "fusion_options": {"d_model": 8},
                                                            "pretrained": {"audio": unimodal["folders"]["audio"]}})),
                    create_on=meta)


def test_deepseek_train_refuses_a_missing_source_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nname = "multimodal.classifier"\nfusion = "concat"\n'
                    f'pretrained = {{audio = "{tmp_path / "gone"}"}}\n'
                    '[data]\nname = "multimodal.digits"\n[train]\nmax_steps = 1\n')
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "train", str(toml), "--set", "strategy.device=cpu")
    assert code == 2, err[-2000:]
    lines = err.splitlines()
    assert len(lines) == 1 and "model.pretrained.audio:" in lines[0] and "gone: no such checkpoint" in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_late_residual_starts_as_late_fusion_of_the_unimodal_models(unimodal: dict[str, Any], tmp_path: Path,
                                                                    fusion: str) -> None:
    from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits

    cfg = config(tmp_path, "res", {"fusion": fusion, "pretrained": unimodal["folders"],
                                   "fusion_options": {"joint": True, "late_residual": True}})
    fused = build_model(config_from_dict(cfg)).eval()
    data = MultimodalDigits(DigitsOptions(eval_size=32, missing=("audio",)), batch_size=32, seed=0)
    batch = data.split_batches("val")[0]
    out = fused.predict(batch)
    # Each unimodal model on its own modality, then late fusion (the mean of the present ones' logits).
    alone = {}
    for m in MODALITIES:
        model = build_model(config_from_dict(config(tmp_path, m, {"modalities": [m], "fusion": "late"})))
        model.load_state_dict(unimodal["weights"][m])
        alone[m] = model.eval().predict(batch).logits
    expected = (alone["vision"] + alone["text"]) / 2  # audio is missing from every sample
    # The joint head's zero table adds the constant log(1/10).
    torch.testing.assert_close(out.logits, expected + torch.log(torch.tensor(0.1)), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out.logits, (alone["vision"] + alone["audio"] + alone["text"]) / 3 - 2.302585)


def _base(vision: str = "embed_dim = 16\ndepths = [1, 1]", d_model: int = 16) -> str:
    """A study's CONFIG.toml: the unimodal fixture's encoders (vision's keys ``vision``), concat's options."""
    return (f'[model]\nfusion = "concat"\n[model.vision]\n{vision}\n[model.audio]\nd_model = 16\nn_heads = 2\n'
            f'n_layers = 1\n[model.text]\nd_model = 16\nn_heads = 2\nn_layers = 1\nmax_seq_len = 24\n'
            f'[model.fusion_options]\nd_model = {d_model}\nhidden = 16\n')


@pytest.mark.parametrize(("base", "says"), [
    (_base("embed_dim = 32\ndepths = [1, 1]"),
     "base.toml (as the study's redundant-concat-s0 run): model.pretrained.vision: {runs}/redundant-vision-s0 used "
     "model.vision.embed_dim = 16, this model 32; give a run with the same [model.vision] keys"),
    (_base(d_model=8),
     "base.toml (as the study's redundant-concat-s0 run): model.pretrained.vision: {runs}/redundant-vision-s0 does "
     "not fit this model (shape (10, 16) of fusion.heads.vision.weight where this model has (10, 8)); give a run "
     "with the same encoder keys and fusion_options.d_model"),
    (None,  # the study's own encoder keys: not the fixture's
     "--unimodal-runs (as the study's redundant-concat-s0 run): model.pretrained.vision: {runs}/redundant-vision-s0 "
     "used model.vision.depths = [1, 1], this model [2, 2]; give a run with the same [model.vision] keys"),
])
def test_unimodal_runs_of_other_encoder_shapes_are_refused_before_the_study_starts(
        unimodal: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str | None, says: str) -> None:
    """check_unimodal_run held only modalities and the training part: a run of other encoder keys
    or shapes failed as the fused model loaded it, after the study had started (study.json written)."""
    _refused_before_the_study_starts(unimodal, tmp_path, monkeypatch, base, says, "concat")


@pytest.mark.parametrize(("base", "says"), [
    (_base("embed_dim = 32\ndepths = [1, 1]"),
     "base.toml (as the study's redundant-late-s0 run): model.pretrained.vision: {runs}/redundant-vision-s0 used "
     "model.vision.embed_dim = 16, this model 32; give a run with the same [model.vision] keys"),
    (None,
     "--unimodal-runs (as the study's redundant-late-s0 run): model.pretrained.vision: {runs}/redundant-vision-s0 "
     "used model.vision.depths = [1, 1], this model [2, 2]; give a run with the same [model.vision] keys"),
    # the runs' own shapes, their heads' d_model for late: the ensemble is evaluated
    (_base().replace('fusion = "concat"', 'fusion = "late"').replace("hidden = 16\n", ""), None),
])
def test_an_ensemble_only_study_checks_the_unimodal_runs_shapes_before_it_starts(
        unimodal: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base: str | None,
        says: str | None) -> None:
    """late with frozen is the ensemble of the given runs (nothing trains): its config was checked
    without building its model, so runs of other encoder shapes failed only when the study, already
    started, evaluated it."""
    _refused_before_the_study_starts(unimodal, tmp_path, monkeypatch, base, says, "late")


def _refused_before_the_study_starts(unimodal: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     base: str | None, says: str | None, config: str) -> None:
    """The study of ``config`` over the fixture's unimodal runs is refused with the line ``says``
    before it writes anything (``None``: it runs, and its one row is ``config``'s)."""
    runs = tmp_path / "given"
    runs.mkdir()
    for m in MODALITIES:
        (runs / f"redundant-{m}-s0").symlink_to(unimodal["folders"][m])
    args = ["base.toml"] if base is not None else []
    if base is not None:
        (tmp_path / "base.toml").write_text(base)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "multimodal", "study", *args, "--recipe", "frozen", "--task",
                                 "redundant", "--seed", "0", "--config", config, "--unimodal-runs", str(runs),
                                 "--out", "res")
    if says is None:
        assert code == 0, err
        rows = [json.loads(line) for line in (tmp_path / "res" / "results.jsonl").read_text().splitlines()]
        assert [(r["config"], r["steps"]) for r in rows] == [(config, 0)]
        return
    assert (code, err.splitlines()[-1]) == (2, "error: " + says.format(runs=runs))
    assert not (tmp_path / "res").exists()
