"""The encoder contract is checked where the framework meets an encoder: when one is created (an
``Encoder`` with a positive int ``output_dim``) and on every output ``multimodal.classifier``
gets (``EncoderOutput``, features ``(B, T, output_dim)`` floating, mask ``(B, T)`` bool). Each
broken kind is one line naming the modality's keys, the encoder, the distribution that registered
it, what was wrong and the fix: the plugin's bug, a PluginError (the CLI exits 1), by the rule its
broken check_inputs and keys_for_inputs answers follow (calls.broken_answer). A value of the
user's that the encoder's Options refuse stays the user's ConfigError (exit 2)."""

from __future__ import annotations

import contextlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from _hosts import enterprise_host, registering
from torch import nn

from deepseek.errors import ConfigError, PluginError, UsageError
from deepseek.models.encoder import CONTRACT, Encoder, EncoderOutput
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import PluginHost

FIX = re.escape(CONTRACT)
BUG = re.escape("; a bug in the plugin: upgrade it or report it to its authors")


@dataclass(frozen=True)
class TinyOptions:
    d_model: int = 8


class Patches(Encoder):
    """A working vision encoder: 4x4 patches of an 8x8 image, 4 tokens of width d_model."""

    Options = TinyOptions

    def __init__(self, options: TinyOptions) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, options.d_model, 4, stride=4)
        self.output_dim = options.d_model

    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        f = self.embed(pixels).flatten(2).transpose(1, 2)
        return EncoderOutput(f, torch.zeros(f.shape[:2], dtype=torch.bool))


class Flat(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        out = super().forward(pixels)
        return EncoderOutput(out.features.mean(1), out.padding_mask[:, 0])


class Bare(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        return super().forward(pixels).features


class NoneMask(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        return EncoderOutput(super().forward(pixels).features, None)


class FloatMask(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        f = super().forward(pixels).features
        return EncoderOutput(f, torch.zeros(f.shape[:2]))


class WrongDim(Patches):
    def __init__(self, options: TinyOptions) -> None:
        super().__init__(options)
        self.output_dim = 2 * options.d_model


class IntFeatures(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        out = super().forward(pixels)
        return EncoderOutput(out.features.long(), out.padding_mask)


class Raises(Patches):
    def forward(self, pixels, padding_mask=None):  # type: ignore[no-untyped-def]
        return super().forward(pixels[:, :, :3])  # a shape bug of its own: a 3-row image cannot be cut in 4x4


class ChecksTrue(Patches):
    def check_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return inputs.shape[1] == 1  # meant "usable?": a bool, not None or words


class NoDim(Encoder):
    Options = TinyOptions

    def __init__(self, options: TinyOptions) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, options.d_model, 4, stride=4)


class ZeroDim(Patches):
    def __init__(self, options: TinyOptions) -> None:
        super().__init__(options)
        self.output_dim = 0


class PlainModule(nn.Module):
    Options = TinyOptions

    def __init__(self, options: TinyOptions) -> None:
        super().__init__()
        self.output_dim = options.d_model


class ListKeys(Patches):
    def keys_for_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return ["img_size", 28]  # not a mapping of option names to values


class KeysRaise(Patches):
    def keys_for_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return {"size": inputs.shape[5]}  # a bug of its own: images have 4 dimensions


class NoneKeys(Patches):
    def keys_for_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return {"d_model": None}  # no config file holds a None: its refusal could not name it


@dataclass(frozen=True)
class ColourOptions:
    d_model: int = 8
    colours: str = "grey"
    window: tuple[int, ...] = (4, 4)


class WantsColour(Patches):
    """Refuses 3-channel images; the keys that would make it take them are a string and a pair."""

    Options = ColourOptions

    def check_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return None if inputs.shape[1] == 1 else f"images must have 1 channel, got {inputs.shape[1]}"

    def keys_for_inputs(self, inputs, padding_mask):  # type: ignore[no-untyped-def]
        return {} if inputs.shape[1] == 1 else {"colours": "rgb", "window": (2, 2)}


@dataclass(frozen=True)
class CheckedOptions:
    d_model: int = field(default=8, metadata={"check": lambda v: None if v % 4 == 0 else "must be a multiple of 4"})
    depth: int = 1


class Checked(Patches):
    """Refuses the user's keys it cannot build with: a field check, and a ConfigError in __init__."""

    Options = CheckedOptions

    def __init__(self, options: CheckedOptions) -> None:
        if options.depth > options.d_model:
            raise ConfigError(f"encoder.vision.acme_checked.depth: {options.depth} is more than d_model="
                              f"{options.d_model}; set depth to at most {options.d_model}")
        super().__init__(TinyOptions(options.d_model))


ENCODERS = {"checked": Checked, "listkeys": ListKeys, "nonekeys": NoneKeys, "wantscolour": WantsColour, "keysraise": KeysRaise, "good": Patches, "flat": Flat, "bare": Bare, "nonemask": NoneMask, "floatmask": FloatMask,
            "wrongdim": WrongDim, "intfeatures": IntFeatures, "nodim": NoDim, "zerodim": ZeroDim, "plain": PlainModule,
            "raises": Raises, "checkstrue": ChecksTrue}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    acme = registering("deepseek_register_encoders", {f"vision.acme_{kind}": cls for kind, cls in ENCODERS.items()})
    return enterprise_host((acme, "acme-encoders"))


def _classifier(host: PluginHost, kind: str):  # noqa: ANN202
    cls = host.resolve("model", "multimodal.classifier").load()
    return instantiate_model(cls, {"modalities": ["vision"], "vision_encoder": f"vision.acme_{kind}",
                                   "fusion": "late", "num_classes": 3}, name="multimodal.classifier", host=host)


def _batch() -> dict:
    return {"vision": {"inputs": torch.randn(2, 1, 8, 8)}, "present": {"vision": torch.ones(2, dtype=torch.bool)},
            "label": torch.tensor([0, 2])}


HEAD = r"^model\.vision: encoder 'vision\.acme_{}' \(acme-encoders 1\.0, registered by [\w.]+\): "


@pytest.mark.parametrize(("kind", "words"), [
    ("flat", r"forward returned features of shape \(2, 8\), not \(batch, tokens, output_dim=8\); "),
    ("bare", r"forward returned a Tensor, not an EncoderOutput; "),
    ("nonemask", r"forward returned padding_mask NoneType, not a \(batch, tokens\) bool tensor \(all False: no "
                 r"padding\); "),
    ("floatmask", r"forward returned a padding_mask of torch\.float32 \(2, 4\), not bool \(2, 4\) \(the features' "
                  r"batch and tokens\); "),
    ("wrongdim", r"forward returned features of shape \(2, 4, 8\), not \(batch, tokens, output_dim=16\); "),
    ("intfeatures", r"forward returned features that are a torch\.int64 tensor, not a floating-point tensor; "),
])
def test_a_broken_output_is_one_line_naming_encoder_and_distribution(host: PluginHost, kind: str, words: str) -> None:
    """The plugin's bug (a PluginError), not the user's config: it was a UsageError, exit 2."""
    model = _classifier(host, kind).eval()
    with pytest.raises(PluginError, match=HEAD.format(kind) + words + FIX + BUG + "$"):
        model(**_batch())
    with pytest.raises(PluginError, match=HEAD.format(kind) + words):
        model.predict(_batch())


def test_what_its_forward_raises_names_the_encoder_and_its_distribution(host: PluginHost) -> None:
    """Was an "internal error" naming neither."""
    for mode in ("train", "eval"):
        model = getattr(_classifier(host, "raises"), mode)()
        with pytest.raises(PluginError, match=HEAD.format("raises") + r"forward raised RuntimeError: .*; a bug in "
                                              r"the plugin"):
            model(**_batch())


@pytest.mark.parametrize(("kind", "words"), [
    ("listkeys", r"keys_for_inputs returned \['img_size', 28\] \(list\), not a mapping of its option names to "
                 r"values a config file holds \(docs/multimodal\.md section 2\); a bug in the plugin: upgrade it or report it to its "
                 r"authors$"),
    ("keysraise", r"keys_for_inputs raised IndexError: .*; a bug in the plugin"),
    ("nonekeys", r"keys_for_inputs returned \{'d_model': None\} \(dict\), not a mapping of its option names to "
                 r"values a config file holds"),
])
def test_a_broken_keys_for_inputs_names_the_encoder(host: PluginHost, kind: str, words: str) -> None:
    # what the classifier's refusal and the contract suites read (multimodal_data.encoder_keys_for)
    from deepseek_enterprise.multimodal_data import encoder_keys_for

    with pytest.raises(PluginError, match=HEAD.format(kind) + words):
        encoder_keys_for(_classifier(host, kind), _batch())


@pytest.mark.parametrize(("kind", "words"), [
    ("nodim", r"NoDim does not set output_dim; set self\.output_dim to the feature width \(a positive int\) in "
              r"__init__ \(docs/multimodal\.md section 2\)" + BUG + "$"),
    ("zerodim", r"ZeroDim sets output_dim = 0; set self\.output_dim"),
    ("plain", r"its target returned PlainModule, not a deepseek\.models\.encoder\.Encoder; register an Encoder "
              r"subclass \(docs/multimodal\.md section 2\)" + BUG + "$"),
])
def test_a_broken_encoder_is_refused_when_it_is_created(host: PluginHost, kind: str, words: str) -> None:
    """What its target built is the plugin's bug (a PluginError): it was a UsageError, exit 2."""
    with pytest.raises(PluginError, match=HEAD.format(kind) + words):
        _classifier(host, kind)
    # Created on its own, its errors name the encoder without a config path.
    target = host.resolve("encoder", f"vision.acme_{kind}").load()
    label = host.resolve("encoder", f"vision.acme_{kind}").label
    with pytest.raises(PluginError, match=rf"^encoder 'vision\.acme_{kind}' \(acme-encoders 1\.0, registered by [\w.]+\): "
                       + words):
        instantiate_model(target, {}, name=f"vision.acme_{kind}", kind="encoder", path=f"encoder.vision.acme_{kind}",
                          label=label)


@pytest.mark.parametrize(("keys", "words"), [
    ({"d_model": 6}, r"model\.vision\.d_model: must be a multiple of 4"),                   # its field check
    ({"depth": 9}, r"model\.vision\.depth: 9 is more than d_model=8; set depth to at most 8$"),  # its __init__
])
def test_a_value_of_the_users_that_a_plugin_encoder_refuses_stays_the_users_config_error(
        host: PluginHost, keys: dict, words: str) -> None:
    """The line between the two faults: the user's keys that the encoder's Options or __init__
    refuse are a ConfigError (a UsageError, exit 2) naming the key, not the plugin's bug."""
    cls = host.resolve("model", "multimodal.classifier").load()
    with pytest.raises(ConfigError, match="^" + words) as info:
        instantiate_model(cls, {"modalities": ["vision"], "vision_encoder": "vision.acme_checked", "vision": keys,
                                "fusion": "late", "num_classes": 3}, name="multimodal.classifier", host=host)
    assert not isinstance(info.value, PluginError)


@pytest.mark.usefixtures("one_thread")  # the count the test found is put back after it, however it ended
def test_a_working_encoder_passes_and_the_check_costs_nothing_noticeable(host: PluginHost) -> None:
    """The checks read shapes and dtypes only: one check costs under 2% of a forward of the tiny
    classifier (whose encoder is one 4x4 convolution, the least work a check could hide in; the
    check is about 5 us, the forward about 1 ms on one CPU thread)."""
    from deepseek.models.encoder import check_output

    model = _classifier(host, "good").eval()
    batch = _batch()
    inputs = batch["vision"]["inputs"]
    encoder = model.encoders["vision"]
    with torch.no_grad():
        out = model(**batch)
        features = encoder(inputs)
    assert out["logits"].shape == (2, 3)

    def best(call, calls: int = 200) -> float:  # noqa: ANN001
        times = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times.append(time.perf_counter() - start)
        return min(times) / calls

    with torch.no_grad():
        forward = best(lambda: model(**batch))
    check = best(lambda: check_output(encoder, features, inputs, "label"))
    assert check < 0.02 * forward, (check, forward)


def test_the_cli_exits_1_with_the_line(host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek.cli.main import main

    (tmp_path / "mm.toml").write_text(
        '[model]\nname = "multimodal.classifier"\nmodalities = ["vision"]\nvision_encoder = "vision.acme_flat"\n'
        'fusion = "late"\n[data]\nname = "multimodal.digits"\nbatch_size = 8\neval_batches = 1\neval_size = 16\n'
        '[train]\nmax_steps = 1\nwarmup_steps = 0\n[precision]\ndtype = "fp32"\n[strategy]\nname = "single"\n'
        'device = "cpu"\n[logging]\nprogress = false\nplot = false\nruns_dir = "runs"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as info:
        main(["train", "mm.toml"], host=host)
    assert info.value.code == 1  # the plugin's bug, not the user's config (was 2)
    line = err.getvalue().strip()
    assert re.match(r"^error: model\.vision: encoder 'vision\.acme_flat' \(acme-encoders 1\.0, registered by [\w.]+\): "
                    r"forward returned features of shape \(8, 8\), .*" + BUG + "$", line) and "\n" not in line, line


@pytest.mark.parametrize(("table", "words"), [
    ({"vision": {"img_size": 0}}, "model.vision.img_size: must be >= 1"),               # a field check
    ({"vision": {"img_size": 9}}, "model.vision.img_size: 9 px in 2-px patches"),       # vision.swin's __post_init__
    ({"text": {"d_model": 30}}, "model.text.n_heads: d_model=30 is not divisible"),    # text.transformer's __init__
    ({"audio": {"d_model": 30}}, "model.audio.n_heads: d_model=30 is not divisible"),  # audio's __post_init__
])
def test_an_encoders_own_errors_name_its_keys_where_they_were_given(table: dict, words: str) -> None:
    """One path style per key: inside a multimodal model an encoder's keys are ``model.<modality>.<key>``
    in its own errors (written as ``encoder.<name>.<key>``) as in field errors; created on its own,
    ``encoder.<name>.<key>``."""
    from deepseek.plugins.host import get_host

    cls = get_host().resolve("model", "multimodal.classifier").load()
    with pytest.raises(ConfigError, match="^" + re.escape(words)):
        instantiate_model(cls, table, name="multimodal.classifier")
    m = next(iter(table))
    name = {"vision": "vision.swin", "text": "text.transformer", "audio": "audio.conv_transformer"}[m]
    import deepseek

    with pytest.raises(ConfigError, match="^" + re.escape(words.replace(f"model.{m}.", f"encoder.{name}.", 1))):
        deepseek.create_encoder(name, **table[m])


def test_a_check_inputs_answer_that_is_not_words_is_the_encoders_fault_not_the_datas(host: PluginHost) -> None:
    """check_inputs returns None or a str; a True was printed as the dataset's problem
    ('model.vision: encoder vision.acme_checkstrue: True (dataset ...)'), blaming the data. A broken
    answer is the plugin's bug, as a broken keys_for_inputs answer is: one PluginError (exit 1)
    naming the encoder and the method, by one rule (multimodal_data._asked)."""
    from types import SimpleNamespace

    from deepseek_enterprise.multimodal_data import check_batch

    with pytest.raises(PluginError, match=HEAD.format("checkstrue") + r"check_inputs returned True \(bool\), not None "
                       r"\(the batch is usable\) or a str saying what is wrong with it \(docs/multimodal\.md "
                       r"section 2\); a bug in the plugin: upgrade it or report it to its authors$"):
        check_batch(_classifier(host, "checkstrue"), _batch(), SimpleNamespace())
    check_batch(_classifier(host, "good"), _batch(), SimpleNamespace())  # None: accepted


def test_the_keys_a_refusal_names_are_written_as_toml(host: PluginHost) -> None:
    """The refusal's '; set model.<modality>.<key> = <value>' pastes into a config file or after
    --set: a string is TOML's "rgb" (was Python's 'rgb'), a pair [2, 2] (was (2, 2), not TOML)."""
    from types import SimpleNamespace

    import tomllib

    from deepseek_enterprise.multimodal_data import check_batch

    batch = {**_batch(), "vision": {"inputs": torch.randn(2, 3, 8, 8)}}
    with pytest.raises(UsageError, match=r"images must have 1 channel, got 3 \(dataset SimpleNamespace\); set ") as info:
        check_batch(_classifier(host, "wantscolour"), batch, SimpleNamespace())
    hint = str(info.value).split("; set ", 1)[1]
    assert hint == 'model.vision.colours = "rgb", model.vision.window = [2, 2]'
    assert tomllib.loads(hint.replace(", model.", "\nmodel.")) == {"model": {"vision": {"colours": "rgb", "window": [2, 2]}}}
