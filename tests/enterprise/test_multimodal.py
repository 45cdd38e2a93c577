"""The multimodal capability: encoders (shapes, masks), fusion methods with missing modalities,
the digits data (disjoint, deterministic splits), and short training runs through core's trainer
that beat chance."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import deepseek
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError, UsageError
from deepseek.models.encoder import EncoderOutput
from deepseek.plugins.host import get_host
from deepseek.training.trainer import Trainer
from deepseek_enterprise.digits.dataset import DigitsOptions, MultimodalDigits
from deepseek_enterprise.digits.sources import (
    SPLITS,
    blend_part,
    load_images,
    load_speech,
    spellings,
)
from deepseek_enterprise.fusion import FusionOutput


def test_registered_encoders_fusions_model_and_dataset() -> None:
    host = get_host()
    assert {"vision.swin", "audio.conv_transformer", "text.transformer"} <= set(host.names("encoder"))
    assert {"concat", "late", "cross_attention"} <= set(host.names("fusion"))
    assert host.resolve("model", "multimodal.classifier").dist == "deepseek-enterprise"
    assert host.resolve("dataset", "multimodal.digits").dist == "deepseek-enterprise"


def test_swin_encoder_shapes_and_options() -> None:
    enc = deepseek.create_encoder("vision.swin").eval()
    out = enc(torch.randn(3, 1, 8, 8))
    assert isinstance(out, EncoderOutput) and out.features.shape == (3, 4, enc.output_dim)
    assert not out.padding_mask.any() and enc.output_dim == 64
    big = deepseek.create_encoder("vision.swin", timm_name="swin_tiny_patch4_window7_224", device="meta")
    assert big.output_dim == 768  # a standard timm shape, random weights, nothing downloaded
    with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.img_size: 10 px in 2-px patches"):
        deepseek.create_encoder("vision.swin", img_size=10)
    with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.num_head: unknown key \(did you mean 'num_heads'\?\)"):
        deepseek.create_encoder("vision.swin", num_head=[2])


@pytest.mark.parametrize("backbone", ["transformer", "conformer"])
def test_audio_encoder_masks_padding(backbone: str) -> None:
    torch.manual_seed(0)
    enc = deepseek.create_encoder("audio.conv_transformer", backbone=backbone, d_model=32, conv_layers=1).eval()
    frames = torch.randn(2, 20, 13)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[1, 9:] = True
    out = enc(frames, mask)
    assert out.features.shape == (2, 10, 32)
    assert out.padding_mask.tolist()[1] == [False] * 5 + [True] * 5  # 9 frames -> 5 after one stride-2 conv
    assert out.features[1, 5:].abs().max() == 0
    # what lies beyond a sample's length does not change its features
    changed = frames.clone()
    changed[1, 9:] = 100.0
    torch.testing.assert_close(enc(changed, mask).features[1, :5], out.features[1, :5])
    # no sample fills the padded length (torchaudio's Conformer.forward asserted on this)
    mask[0, 17:] = True
    out = enc(frames, mask)
    assert out.padding_mask.tolist() == [[False] * 9 + [True], [False] * 5 + [True] * 5]
    assert torch.isfinite(out.features).all() and out.features[0, 9:].abs().max() == 0
    mask[1] = True  # a sample that is all padding gives zeros, not NaN
    out = enc(frames, mask)
    assert torch.isfinite(out.features).all() and out.features[1].abs().max() == 0


def test_audio_encoder_from_waveforms() -> None:
    enc = deepseek.create_encoder("audio.conv_transformer", input="waveform", d_model=32, conv_layers=2).eval()
    t = torch.arange(8000) / 8000
    wave = torch.stack([torch.sin(2 * torch.pi * 440 * t), torch.sin(2 * torch.pi * 880 * t)])
    mask = torch.zeros(2, 8000, dtype=torch.bool)
    mask[1, 4000:] = True
    out = enc(wave, mask)
    lengths = (~out.padding_mask).sum(1).tolist()
    assert out.features.shape[0] == 2 and lengths[0] > lengths[1] > 0 and torch.isfinite(out.features).all()


def test_swin_encoder_loads_local_safetensors_weights(tmp_path: Path) -> None:
    """`weights` loads a local safetensors file of the timm model's state; a file of another
    shape is one line naming it."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = deepseek.create_encoder("vision.swin")
    save_file({k: v.contiguous() for k, v in source.swin.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    torch.manual_seed(2)
    loaded = deepseek.create_encoder("vision.swin", weights=str(tmp_path / "swin.safetensors")).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(loaded(x).features, source.eval()(x).features)
    with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.weights: .*swin\.safetensors: weights do not "
                                          r"fit this model \(shape mismatch") as info:
        deepseek.create_encoder("vision.swin", embed_dim=48, weights=str(tmp_path / "swin.safetensors"))
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.weights: .* is not a file"):
        deepseek.create_encoder("vision.swin", weights=str(tmp_path / "missing.safetensors"))
    # a float weight stored as integers was loaded as truncated whole numbers, without a word
    state = {k: v.contiguous() for k, v in source.swin.state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    save_file({**state, name: (state[name] * 100).to(torch.int64)}, str(tmp_path / "ints.safetensors"))
    with pytest.raises(ConfigError, match=rf"^encoder\.vision\.swin\.weights: .*ints\.safetensors: '{re.escape(name)}' "
                                          r"holds torch\.int64 values where the model keeps torch\.float32; the file "
                                          r"is damaged or not a Swin's weights: give the floating-point weights of a "
                                          r"Swin$"):
        deepseek.create_encoder("vision.swin", weights=str(tmp_path / "ints.safetensors"))


def test_swin_weights_on_the_meta_device_are_checked_from_the_header_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``deepseek tune`` builds to check a search space reads no weights: the file's header
    is held to the encoder's shapes."""
    from safetensors.torch import save_file

    import deepseek.training.checkpoint as checkpoint

    source = deepseek.create_encoder("vision.swin")
    save_file({k: v.contiguous() for k, v in source.swin.state_dict().items()}, str(tmp_path / "swin.safetensors"))

    def no_reading(path: Any) -> None:
        raise AssertionError(f"weights read from {path}")

    monkeypatch.setattr(checkpoint, "load_model_state", no_reading)
    with torch.device("meta"):
        assert deepseek.create_encoder("vision.swin", weights=str(tmp_path / "swin.safetensors")).output_dim == 64
        with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.weights: .*swin\.safetensors: weights do "
                                              r"not fit this model \(shape mismatch"):
            deepseek.create_encoder("vision.swin", embed_dim=48, weights=str(tmp_path / "swin.safetensors"))
        (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
        with pytest.raises(ConfigError, match=r"^encoder\.vision\.swin\.weights: .*bad\.safetensors: not a readable "
                                              r"safetensors file"):
            deepseek.create_encoder("vision.swin", weights=str(tmp_path / "bad.safetensors"))


def _features(batch: int = 4) -> dict[str, EncoderOutput]:
    torch.manual_seed(0)
    out = {}
    for m, (t, d) in {"vision": (4, 16), "audio": (6, 8), "text": (5, 12)}.items():
        mask = torch.zeros(batch, t, dtype=torch.bool)
        mask[0, t // 2:] = True
        out[m] = EncoderOutput(torch.randn(batch, t, d).masked_fill(mask[..., None], 0.0), mask)
    return out


@pytest.mark.parametrize("name", ["concat", "late", "cross_attention"])
def test_fusion_handles_any_subset_of_modalities(name: str) -> None:
    cls = get_host().resolve("fusion", name).load()
    fusion = cls(cls.Options(d_model=16) if name != "cross_attention" else cls.Options(d_model=16, heads=2),
                 dims={"vision": 16, "audio": 8, "text": 12}, num_classes=10).eval()
    feats = _features()
    all_present = {m: torch.ones(4, dtype=torch.bool) for m in feats}
    out = fusion(feats, all_present)
    assert isinstance(out, FusionOutput) and out.logits.shape == (4, 10) and torch.isfinite(out.logits).all()
    assert set(out.modality_logits) == set(out.pooled) == set(feats)
    # A missing modality is masked: changing its features changes nothing.
    present = {**all_present, "audio": torch.tensor([True, False, True, False])}
    noisy = {**feats, "audio": EncoderOutput(feats["audio"].features + 5.0, feats["audio"].padding_mask)}
    a, b = fusion(feats, present).logits, fusion(noisy, present).logits
    torch.testing.assert_close(a[[1, 3]], b[[1, 3]])
    assert not torch.allclose(a[[0, 2]], b[[0, 2]])
    only_text = {m: torch.tensor([m == "text"] * 4) for m in feats}
    assert torch.isfinite(fusion(feats, only_text).logits).all()


def test_data_splits_are_disjoint_deterministic_and_speaker_balanced() -> None:
    images, speech = load_images(), load_speech()
    assert sum(len(images.index[s]) for s in SPLITS) == 1797
    assert sum(len(speech.index[s]) for s in SPLITS) == 3000
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(images.index[a]) & set(images.index[b])
                assert not set(speech.index[a]) & set(speech.index[b])
    # the recovered speakers: ~500 recordings each with ~50 of every digit; whole speakers per split
    sizes = np.bincount(speech.speaker)
    assert len(sizes) == 6 and sizes.min() > 400 and sizes.max() < 600
    test_speakers = set(speech.speaker[speech.index["test"]])
    assert len(test_speakers) == 1 and not test_speakers & set(speech.speaker[speech.index["train"]])
    assert all(np.bincount(speech.labels["test"], minlength=10) > 30)
    assert all(len(forms) >= 5 for forms in spellings())


def _digest(data: MultimodalDigits) -> str:
    """sha256 of three training batches and two validation batches of ``data``."""
    h = hashlib.sha256()
    for _ in range(3):
        b = next(data)
        for t in (b["vision"]["inputs"], b["audio"]["inputs"], b["text"]["inputs"], b["label"]):
            h.update(t.numpy().tobytes())
    for b in data.split_batches("val", 2):
        h.update(b["audio"]["inputs"].numpy().tobytes())
    return h.hexdigest()


def test_a_split_not_a_multiple_of_the_batch_ends_in_a_shorter_batch() -> None:
    data = MultimodalDigits(DigitsOptions(task="redundant", eval_size=20), batch_size=8, seed=0)
    batches = data.split_batches("test")
    assert [len(b["label"]) for b in batches] == [8, 8, 4]  # every sample, the rest in the last batch
    assert [len(b["label"]) for b in data.split_batches("test", 2)] == [8, 8]
    whole = MultimodalDigits(DigitsOptions(task="redundant", eval_size=20), batch_size=32, seed=0).split_batches("test")
    assert len(whole) == 1 and torch.equal(whole[0]["label"], torch.cat([b["label"] for b in batches]))


def test_train_sources_cut_the_training_split_into_fit_and_blend_parts(tmp_path: Path) -> None:
    images, speech = load_images(), load_speech()
    image, recording = blend_part(images, speech)
    # blend: training speaker cluster 3, whole (about 500 recordings), and about a quarter of the training images
    assert set(speech.speaker[speech.index["train"][recording]]) == {3} and recording.sum() == (speech.speaker == 3).sum()
    assert 0.2 < image.mean() < 0.3
    data = {p: MultimodalDigits(DigitsOptions(train_sources=p), batch_size=8, seed=3) for p in ("all", "fit", "blend")}
    for k, n in ((0, len(images.index["train"])), (1, len(speech.index["train"]))):  # images, then recordings
        drawn = {p: [set(ix.tolist()) for ix in d._by_class["train"][k]] for p, d in data.items()}
        assert all(drawn[p][c] for p in drawn for c in range(10))  # every digit in every part
        fit, blend, every = (set().union(*drawn[p]) for p in ("fit", "blend", "all"))
        assert not fit & blend and fit | blend == every == set(range(n))
    blend_recordings = set(np.flatnonzero(recording))
    assert blend_recordings == set().union(*[set(ix.tolist()) for ix in data["blend"]._by_class["train"][1]])
    # all: exactly the samples of before the option (pinned); the parts draw other training samples,
    # the same validation samples
    assert _digest(data["all"])[:16] == "4fc7d9fbca876e0f"
    batches = {p: next(MultimodalDigits(DigitsOptions(train_sources=p), batch_size=8, seed=3)) for p in data}
    assert not torch.equal(batches["fit"]["audio"]["inputs"], batches["blend"]["audio"]["inputs"])
    val = [d.split_batches("val", 1)[0]["audio"]["inputs"] for d in data.values()]
    assert torch.equal(val[0], val[1]) and torch.equal(val[0], val[2])
    # the run folder records the part and what it is
    record = data["fit"].split_record()
    assert record["train_sources"] == "fit"
    assert record["blend"]["recordings"] == speech.index["train"][recording].tolist()
    assert set(record["blend"]["images"]) < set(record["images"]["train"]) and len(record["blend"]["images"]) == image.sum()
    with pytest.raises(ConfigError, match=r"^data\.train_sources: 'half' \(str\) is not allowed; allowed values: 'all', "
                                          r"'fit', 'blend'$"):
        _config(tmp_path, {}, {"train_sources": "half"})
    with pytest.raises(UsageError, match=r"^data position: saved for another train.seed, data.task or data.train_sources"):
        data["blend"].load_state_dict(data["fit"].state_dict())
    data["all"].load_state_dict({"index": 2, "seed": 3, "task": "redundant"})  # saved before the option: all
    for index in (True, -1, 2.0, "2"):  # read back from disk: a bool is not a position (True == 1 in Python)
        with pytest.raises(UsageError, match=rf"^data position: index is {re.escape(repr(index))}, expected a whole "
                                             "number >= 0; the saved position is corrupt"):
            data["all"].load_state_dict({"index": index, "seed": 3, "task": "redundant"})


def _config(tmp_path: Path, model: dict[str, Any], data: dict[str, Any] | None = None, steps: int = 60) -> Any:
    return config_from_dict({
        "model": {"name": "multimodal.classifier", **model},
        "data": {"name": "multimodal.digits", "batch_size": 32, "eval_batches": 8, "eval_size": 256, **(data or {})},
        "train": {"max_steps": steps, "warmup_steps": 5, "lr": 3e-3, "min_lr": 3e-4, "eval_interval": steps},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "checkpoint": {"interval": 0, "at_end": True},
        "logging": {"progress": False, "plot": True, "runs_dir": str(tmp_path)},
    })


def test_trimodal_training_beats_chance_and_records_its_splits(tmp_path: Path) -> None:
    config = _config(tmp_path, {"fusion": "cross_attention", "aux_loss_weight": 0.5, "modality_dropout": 0.2,
                                "contrastive_weight": 0.1})
    result = Trainer(config, run_dir=tmp_path / "run", quiet=True).fit()
    assert result.val_metrics["val_accuracy"] > 0.2  # chance is 0.1
    assert {"val_accuracy_vision", "val_accuracy_audio", "val_accuracy_text"} <= set(result.val_metrics)
    splits = json.loads((result.run_dir / "splits.json").read_text())
    assert set(splits) == {"images", "recordings", "speaker_clusters", "blend", "train_sources"}
    assert splits["train_sources"] == "all"
    assert (result.run_dir / "loss.png").stat().st_size > 0
    confusion = json.loads((result.run_dir / "confusion.json").read_text())
    assert confusion["step"] == 60 and confusion["split"] == "val" and confusion["samples"] == 256
    assert sum(confusion["confusion"][i][i] for i in range(10)) / 256 == pytest.approx(confusion["accuracy"])
    assert (result.run_dir / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_unimodal_model_and_missing_modality_at_evaluation(tmp_path: Path) -> None:
    config = _config(tmp_path, {"modalities": ["text"], "fusion": "late"}, steps=30)
    assert Trainer(config, run_dir=tmp_path / "text", quiet=True).fit().val_metrics["val_accuracy"] > 0.2
    with pytest.raises(ConfigError, match=r"^data\.missing: \['vision', 'audio', 'text'\] names every modality; name at most two"):
        _config(tmp_path, {}, {"missing": ["vision", "audio", "text"]})
    with pytest.raises(ConfigError, match=r"^model\.modalities: \['smell'\] names 'smell', not a modality; give distinct"):
        _config(tmp_path, {"modalities": ["smell"]})


def test_example_config_trains(tmp_path: Path) -> None:
    """examples/multimodal/digits.toml is a valid config that trains (2 steps here)."""
    from deepseek.config.load import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "multimodal" / "digits.toml"
    config = load_config(example, overrides=["train.max_steps=2", "train.eval_interval=2", "data.eval_batches=1",
                                             "data.eval_size=64", f"logging.runs_dir={json.dumps(str(tmp_path))}"])
    assert (config.model.name, config.data.name) == ("multimodal.classifier", "multimodal.digits")
    result = Trainer(config, quiet=True).fit()
    assert result.step == 2 and (result.run_dir / "confusion.json").is_file()


def test_parts_resolve_on_the_host_of_the_run(tmp_path: Path) -> None:
    """A fusion method registered in process on the host given to the trainer is the one the
    classifier builds (the model gets the run's host, not the process's)."""
    from _hosts import enterprise_host, registering

    from deepseek_enterprise.fusion import Fusion, FusionBaseOptions, present_mean

    class MeanOfLogits(Fusion):
        Options = FusionBaseOptions

        def forward(self, features, present):  # type: ignore[no-untyped-def]
            pooled = self.pool(features)
            logits = self.classify(pooled)
            return FusionOutput(present_mean(logits, present), logits, pooled)

    host = enterprise_host((registering("deepseek_register_fusions", {"test.mean_of_logits": MeanOfLogits}),
                            "deepseek-test-fusion"))
    assert "test.mean_of_logits" not in get_host().names("fusion")
    config = config_from_dict({
        "model": {"name": "multimodal.classifier", "fusion": "test.mean_of_logits"},
        "data": {"name": "multimodal.digits", "batch_size": 16, "eval_batches": 1, "eval_size": 32},
        "train": {"max_steps": 2, "warmup_steps": 1, "eval_interval": 2},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": "cpu"},
        "logging": {"progress": False, "plot": False, "runs_dir": str(tmp_path)},
    }, host=host)
    trainer = Trainer(config, quiet=True, host=host)
    result = trainer.fit()
    assert result.step == 2 and np.isfinite(result.losses).all()
    assert type(trainer.strategy.unwrapped_model().fusion) is MeanOfLogits


@pytest.mark.parametrize(("model", "data", "words", "fix"), [
    ({"text": {"max_seq_len": 16}}, {"text_bytes": 24}, "model.text: encoder text.transformer: sequences of 24 tokens "
                                                        "are longer than max_seq_len=16", "model.text.max_seq_len = 24"),
    ({"text": {"vocab_size": 100}}, {}, "model.text: encoder text.transformer: token ids span 0..",
     "model.text.vocab_size = "),
    ({"audio": {"n_features": 20}}, {}, "model.audio: encoder audio.conv_transformer: frames must be (batch, time, "
                                        "n_features=20)", "model.audio.n_features = 13"),
    ({"audio": {"max_frames": 8}}, {}, "model.audio: encoder audio.conv_transformer: the inputs give 48 frames",
     "model.audio.max_frames = 48"),
    ({"vision": {"img_size": 16, "patch_size": 4}}, {}, "model.vision: encoder vision.swin: images must be (batch, 1, 16, 16)",
     "model.vision.img_size = 8"),
])
def test_data_the_encoders_cannot_take_is_one_line_before_anything_is_written(
        tmp_path: Path, model: dict[str, Any], data: dict[str, Any], words: str, fix: str | None) -> None:
    # the refusal ends with the keys that make the encoder take the data (Encoder.keys_for_inputs)
    from deepseek.errors import UsageError

    config = _config(tmp_path / "runs", model, data, steps=1)
    end = r"\(dataset [A-Za-z]+\)" + (r"; set " + re.escape(fix) + r"\d*$" if fix else "$")
    with pytest.raises(UsageError, match=r"^" + re.escape(words) + ".*" + end):
        Trainer(config, quiet=True).fit()
    assert not (tmp_path / "runs").exists()


def test_activation_checkpointing_keeps_the_losses(tmp_path: Path) -> None:
    """train.activation_checkpointing recomputes the text and vision blocks: same losses."""
    runs = []
    for ckpt in (False, True):
        config = config_from_dict({**_config(tmp_path / str(ckpt), {"fusion": "concat"}, steps=3).to_dict(),
                                   "train": {"max_steps": 3, "warmup_steps": 1, "eval_interval": 3,
                                             "activation_checkpointing": ckpt}})
        trainer = Trainer(config, quiet=True)
        runs.append(trainer.fit().losses)
        swin = trainer.strategy.unwrapped_model().encoders["vision"].swin
        assert all(stage.grad_checkpointing is ckpt for stage in swin.layers)
    assert runs[0] == pytest.approx(runs[1], rel=1e-6)


def test_the_audio_encoder_refuses_padding_before_the_recording() -> None:
    """Its lengths are counted from the mask, so a left-padded row was read from step 0, its
    padding as frames and the recording's end cut (no error)."""
    import deepseek

    enc = deepseek.create_encoder("audio.conv_transformer")
    inputs, mask = enc.example_inputs(3)
    assert enc.check_inputs(inputs, mask) is None  # padding at the end of a row
    assert enc.check_inputs(inputs, torch.ones_like(mask)) is None  # a row of padding only
    left = torch.zeros_like(mask)
    left[1, :5] = True
    assert enc.check_inputs(inputs, left) == ("padding_mask marks padding before real steps in row 1; this encoder "
                                              "takes each recording from the start of its row, padding after it "
                                              "(pad on the right)")


def test_a_batch_larger_than_memory_is_one_line_before_anything_is_written(tmp_path: Path) -> None:
    """data.batch_size 10^11 built its samples one by one until the process was killed (found
    through `multimodal study --batch`); the batch's bytes are now held to the machine's memory."""
    config = _config(tmp_path / "runs", {}, {"batch_size": 10**11}, steps=1)
    with pytest.raises(UsageError, match=r"^data\.batch_size 100,000,000,000 samples of [\d,]+ bytes .* GiB a batch: "
                                         r"more than this machine's [\d,]+ GiB of memory; lower it$"):
        Trainer(config, quiet=True).fit()
    assert not (tmp_path / "runs").exists()
