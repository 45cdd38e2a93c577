"""prune.mlp: Torch-Pruning removes MLP channels of the tri-modal classifier's Swin, audio and text
encoders; the result is the same architecture with narrower MLPs (mlp_ratio / d_ff), rebuilt from
its config and evaluated like any run."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from _compresshelpers import deepseek_cli, train_tiny
from _hosts import enterprise_host, registering
from _inprocess import deepseek_run
from test_quantize import MULTIMODAL

from deepseek.config.components import NoOptions
from deepseek.config.load import config_from_dict
from deepseek.errors import PluginError, UsageError
from deepseek.models.encoder import Encoder, EncoderOutput
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import PLUGIN_BUG
from deepseek.plugins.host import PluginHost
from deepseek.training.build import build_dataset, build_model
from deepseek_enterprise.compress.compressor import create_compressor


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


def test_dead_channels_go_first_and_leave_the_classifier_unchanged(host: PluginHost) -> None:
    torch.manual_seed(0)
    config = config_from_dict(MULTIMODAL, host=host)
    model = build_model(config, host=host).eval()
    data = build_dataset(config, host)
    batch = data.validation_batches(1)[0]
    dead = {}
    with torch.no_grad():  # kill half of every MLP's channels: no input, no output
        for name, enc in model.encoders.items():
            for expand, contract in enc.mlp_pairs():
                half = expand.out_features // 2
                expand.weight[:half] = 0
                expand.bias[:half] = 0
                contract.weight[:, :half] = 0
                dead.setdefault(name, []).append(half)
        before = model(**batch)["loss"]
    result = create_compressor(host, "prune.mlp", {"ratio": 0.5, "multiple_of": 1}, where="--set").compress(
        model, config, [next(data)])
    assert result.record["channels_removed"] == dead  # vision [32, 64], audio [64], text [64]
    assert result.model_table["vision"]["mlp_ratio"] == 2.0
    assert result.model_table["audio"]["d_ff"] == 64 and result.model_table["text"]["d_ff"] == 64
    rebuilt = build_model(config_from_dict({**MULTIMODAL, "model": result.model_table}, host=host), host=host).eval()
    rebuilt.load_state_dict(result.model.state_dict())  # strict: the config states every new shape
    with torch.no_grad():
        after = rebuilt(**batch)["loss"]
    assert float(after) == pytest.approx(float(before), abs=1e-5)
    widths = [e.out_features for enc in rebuilt.encoders.values() for e, _ in enc.mlp_pairs()]
    assert widths == [32, 64, 64, 64]  # Swin stages 16 and 32 wide at ratio 2; audio and text d_ff 64


def test_a_gpt_is_sent_to_prune_ffn(host: PluginHost) -> None:
    config = config_from_dict({"model": {"name": "tiny", "d_model": 32, "n_heads": 2, "n_layers": 1}}, host=host)
    model = build_model(config, host=host)
    with pytest.raises(UsageError, match="^prune.mlp: a GPT's MLP channels are pruned by prune.ffn; use prune.ffn$"):
        create_compressor(host, "prune.mlp", {}, where="--set").check_model(model, config)


def test_the_gpt_pruners_on_another_model_name_what_applies_to_it(host: PluginHost) -> None:
    """prune.ffn / prune.heads on the tri-modal classifier said only "prunes GPT models": now the
    methods that take it (prune.mlp where its encoders declare MLPs; quantize.* takes any model)."""
    config = config_from_dict(MULTIMODAL, host=host)
    model = build_model(config, host=host)
    for method in ("prune.heads", "prune.ffn"):
        with pytest.raises(UsageError) as raised:
            create_compressor(host, method, {}, where="--set").check_model(model, config)
        assert str(raised.value) == (f"{method}: prunes GPT models; 'multimodal.classifier' is MultimodalClassifier: "
                                     "use prune.mlp (its encoders' MLP channels) or quantize.int8 (or another "
                                     "quantize.* method)")
    other = enterprise_host((registering("deepseek_register_models", {"acme.text": TextClassifier}), "acme-models"))
    config = config_from_dict({"model": {"name": "acme.text"}}, host=other)
    with pytest.raises(UsageError, match=r"^prune\.heads: prunes GPT models; 'acme.text' is TextClassifier: use "
                                         r"quantize\.int8 \(or another quantize\.\* method\)$"):  # no MLP declared
        create_compressor(other, "prune.heads", {}, where="--set").check_model(TextClassifier({}), config)


class TextClassifier(TrainableModel):
    """A third party's model built from a registered encoder, which it declares (or not)."""

    Options = NoOptions  # registered as acme.text: its declarations are blamed on its plugin

    def __init__(self, declared: object) -> None:
        super().__init__()
        import deepseek

        self.body = deepseek.create_encoder("text.transformer", d_model=32, n_heads=2, n_layers=1, d_ff=64)
        self.declared = declared

    def encoder_modules(self) -> object:
        return {"body": self.body} if self.declared == "yes" else self.declared


def test_prune_mlp_finds_the_encoders_a_model_declares_and_only_those() -> None:
    """A declaration that is no mapping of [model] keys to Encoders is the model's bug: its
    plugin's one-line PluginError (was: a UsageError, exit code 2, as if the user's)."""
    host = enterprise_host((registering("deepseek_register_models", {"acme.text": TextClassifier}), "acme-models"))
    config = config_from_dict({"model": {"name": "acme.text"}}, host=host)  # the model's registration
    prune = create_compressor(host, "prune.mlp", {}, where="--set")
    prune.check_model(TextClassifier("yes"), config)  # declared: accepted (it has MLP pairs)
    with pytest.raises(UsageError, match=r"has no encoder declaring MLP pairs \(Encoder.mlp_pairs\) among those it "
                                         r"declares \(TrainableModel.encoder_modules\)"):
        prune.check_model(TextClassifier({}), config)  # an attribute holding an encoder is not enough
    label = "model 'acme.text' (acme-models 1.0, registered by _hosts)"
    for bad, said in (([1], "list"), ({"body": torch.nn.Linear(1, 1)}, "'body': Linear"), ({"a b": None}, "'a b': NoneType")):
        with pytest.raises(PluginError) as raised:
            prune.check_model(TextClassifier(bad), config)
        assert str(raised.value).startswith(f"{label}: encoder_modules() returned {said}; it must return a mapping "
                                            "of the [model] key holding each encoder's options"), raised.value
        assert str(raised.value).endswith(PLUGIN_BUG)


def test_a_multiple_of_wider_than_the_mlp_is_one_line(host: PluginHost) -> None:
    """It was blamed on the compressor: its returned table built another model than it returned."""
    config = config_from_dict(MULTIMODAL, host=host)
    model = build_model(config, host=host)
    data = build_dataset(config, host)
    with pytest.raises(UsageError, match=r"^prune\.mlp: ratio=0\.5 of the vision encoder's MLP width 64 keeps 1000 "
                                         r"channels \(multiple_of=1000\); choose a multiple_of and ratio that keep "
                                         r"between 1 and 63$"):
        create_compressor(host, "prune.mlp", {"multiple_of": 1000}, where="--set").compress(model, config, [next(data)])


@pytest.fixture(scope="module")
def mm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``run``: the tiny tri-modal classifier trained 10 steps (each test writes its own outputs)."""
    return train_tiny(tmp_path_factory.mktemp("mm"), MULTIMODAL)


def test_compress_prunes_the_trained_tri_modal_model_and_the_result_evaluates(mm_run: Path) -> None:
    tmp_path = mm_run
    # a process of its own: torch-pruning's "Unwrapped parameters" warning would reach its stderr
    out = deepseek_cli("compress", "--checkpoint", "run", "--method", "prune.mlp", "--set", "score=taylor",
                       "--out", "pruned", "--latency-runs", "0", "--json", "pruned.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "Unwrapped parameters" not in out.stderr
    report = json.loads((tmp_path / "pruned.json").read_text())
    assert report["compressed"]["parameters"] < report["original"]["parameters"]
    assert "val_accuracy" in report["compressed"]
    ev = deepseek_run("eval", "--checkpoint", "pruned", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(report["compressed"]["val_loss"], rel=1e-5)
    saved = (tmp_path / "pruned" / "config.toml").read_text()
    assert "mlp_ratio = 2.0" in saved and "d_ff = 64" in saved
    bad = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.mlp", "--set", "ratio=1",
                       "--out", "never", cwd=tmp_path)
    assert bad.returncode == 2 and "ratio: must be between 0 and 1" in bad.stderr and not (tmp_path / "never").exists()


def test_the_search_recovers_the_pruned_tri_modal_model_by_fine_tuning(mm_run: Path) -> None:
    # lr 1e-9: the fine-tuning must start from the pruned weights, so it ends where the bare cut is
    from deepseek.training.checkpoint import load_model_state, resolve_checkpoint

    tmp_path = mm_run
    recovered = "prune.mlp ratio=0.5 + recover lr=1e-09"
    out = deepseek_run("compress", "--checkpoint", "run", "--max-drop", "1000pt", "--recipe", recovered,
                       "--recovery-steps", "3", "--out", "rec", "--latency-runs", "0", "--json", "rec.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    bare = deepseek_run("compress", "--checkpoint", "run", "--method", "prune.mlp", "--out", "bare", "--latency-runs",
                        "0", "--json", "bare.json", cwd=tmp_path)
    assert bare.returncode == 0, bare.stderr
    report, cut = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("rec", "bare"))
    (row,) = report["candidates"]
    assert row["recipe"] == recovered and row["verdict"].startswith("kept") and report["recipe"] == recovered
    step = row["records"][1]
    assert step["method"] == "recover" and step["record"]["method"] == "fine-tune" and step["record"]["steps"] == 3
    assert "teacher" not in step["record"] and len(step["record"]["train_loss"]) == 2
    assert row["parameters"] == cut["compressed"]["parameters"] < report["original"]["parameters"]
    recovered_weights = load_model_state(resolve_checkpoint(tmp_path / "rec"))
    bare_weights = load_model_state(resolve_checkpoint(tmp_path / "bare"))
    assert sorted(recovered_weights) == sorted(bare_weights)
    assert max((recovered_weights[k] - v).abs().max().item() for k, v in bare_weights.items()) < 1e-6
    saved = (tmp_path / "rec" / "config.toml").read_text()
    assert 'name = "multimodal.classifier"' in saved and "mlp_ratio = 2.0" in saved
    ev = deepseek_run("eval", "--checkpoint", "rec", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert json.loads(ev.stdout)["val_loss"] == pytest.approx(row["val_loss"], rel=1e-5)


@dataclass(frozen=True)
class GRUOptions:
    bidirectional: bool = True


class GRUFrames(Encoder):
    """A third-party audio encoder: a GRU over the packed frames, then a residual MLP it declares."""

    Options = GRUOptions

    def __init__(self, options: GRUOptions) -> None:
        super().__init__()
        self.options = options
        self.gru = torch.nn.GRU(13, 16, batch_first=True, bidirectional=options.bidirectional)
        self.proj = torch.nn.Linear(32 if options.bidirectional else 16, 16)
        self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
        self.output_dim = 16

    def forward(self, frames, padding_mask=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        mask = torch.zeros(frames.shape[:2], dtype=torch.bool) if padding_mask is None else padding_mask
        lengths = (~mask).sum(1).clamp(min=1).cpu()  # packed: padding never reaches the real frames
        packed = self.gru(pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False))[0]
        h = self.proj(pad_packed_sequence(packed, batch_first=True, total_length=frames.shape[1])[0])
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return EncoderOutput(h * (~mask).unsqueeze(-1), mask)

    def mlp_pairs(self):  # type: ignore[no-untyped-def]  # noqa: ANN201
        return [(self.fc1, self.fc2)]

    def narrowed_options(self, table, keep, multiple_of):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return table, [int(32 * keep)]

    def example_inputs(self, batch_size: int = 2):  # type: ignore[no-untyped-def]  # noqa: ANN201
        return torch.randn(batch_size, 6, 13), None


def test_an_encoder_torch_pruning_cannot_trace_is_one_line_naming_its_table(capfd: pytest.CaptureFixture[str]) -> None:
    """A bidirectional GRU over packed frames in a plugin's encoder: Torch-Pruning's trace of the whole model raised
    TypeError, reported as 'compressor prune.mlp (deepseek-enterprise): compress raised TypeError
    ...; a bug in the plugin', exit code 1. Each declaring encoder is now traced alone, on its own
    example_inputs(): the one the library cannot follow is named, a usage error (exit code 2)."""
    host = enterprise_host((registering("deepseek_register_encoders", {"audio.gru_frames": GRUFrames}), "deepseek-grus"))
    config = config_from_dict({**MULTIMODAL, "model": {**MULTIMODAL["model"], "audio_encoder": "audio.gru_frames",
                                                        "audio": {}}}, host=host)
    model = build_model(config, host=host).eval()
    batch = next(build_dataset(config, host))
    prune = create_compressor(host, "prune.mlp", {"ratio": 0.5, "multiple_of": 1}, where="--set")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as shown, pytest.raises(
            UsageError, match=r"^prune\.mlp: Torch-Pruning could not trace the encoder of "
                              r"\[model\.audio\] \(test_prune_mlp\.GRUFrames\): TypeError: .*; it prunes "
                              r"encoders built of layers it follows \(not a bidirectional nn\.GRU") as refused:
        warnings.simplefilter("always")
        prune.compress(model, config, [batch])
    # The refusal is the only line: Torch-Pruning's "Maximum recursive depth reached!" warning
    # (on stderr before it, from the CLI) is not shown, and nothing else is printed.
    assert [str(w.message) for w in shown] == [] and "\n" not in str(refused.value)
    assert capfd.readouterr() == ("", "")
