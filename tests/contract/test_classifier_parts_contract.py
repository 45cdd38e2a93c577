"""Contract every registered encoder and fusion method meets inside the model that uses them,
``multimodal.classifier`` (deepseek-enterprise; docs/multimodal.md sections 2 and 3), whoever
registered it. A ``<modality>.*`` encoder of a modality the classifier takes (vision, audio,
text), with its own defaults, shares a classifier with a tiny built-in encoder of another
modality; a fusion method, with its own defaults, fuses the three tiny built-in encoders. On a
batch built from the encoders' ``example_inputs`` (the batch check of a training run, each
encoder's ``check_inputs`` included, accepts it), a training step under modality dropout gives a
finite loss whose gradients reach every parameter of the plugin, and a copy of the classifier with
its parameters alone in bf16 (DeepSpeed's 16-bit engine: :mod:`_sixteen_bit`) gives a finite loss
on that batch with every attention mask in the queries' dtype; in eval mode, samples lacking a
modality (every mix of present ones) get finite logits ``(B, num_classes)``.
An encoder whose name starts with no such modality (``acme.patches``) gets a skipped case
saying the classifier never takes it. Skipped where no edition adds ``multimodal.classifier``; ids are ``<dist>:<name>`` as in the
other suites (``-k "acme-encoders:"``)."""

from __future__ import annotations

import itertools

import pytest
import torch
from _gradients import check_every_parameter_trains
from _sixteen_bit import check_forward_in_16_bits

from deepseek.errors import PluginError
from deepseek.plugins.host import get_host

HOST = get_host()
HAS_CLASSIFIER = "fusion" in HOST.known_kinds()
MODALITIES = ("vision", "audio", "text")
TINY = {"vision_encoder": "vision.swin", "audio_encoder": "audio.conv_transformer", "text_encoder": "text.transformer",
        "vision": {"img_size": 8, "patch_size": 4, "embed_dim": 8, "depths": [1], "num_heads": [1], "window_size": 2,
                   "in_chans": 1},
        "audio": {"d_model": 8, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 8, "n_heads": 2, "n_layers": 1, "max_seq_len": 16}}
"""Built-in encoders at tiny sizes, for the modalities the plugin under test does not fill."""
CLASSES = 3


def modality_of(encoder_name: str) -> str | None:
    """The classifier modality a registered encoder name (``vision.x`` or ``dist:vision.x``) is
    for, or None."""
    prefix = encoder_name.rpartition(":")[2].partition(".")[0]
    return prefix if prefix in MODALITIES else None




def encoder_cases(host) -> list:  # noqa: ANN001
    """One case per registered encoder of ``host``: an encoder whose name has no classifier
    modality as its first part (``acme.patches``) is a skipped case saying why, not left out, so
    that ``-k "acme:"`` shows its author that ``multimodal.classifier`` never takes it."""
    cases = []
    for comp in host.components("encoder"):
        marks = () if modality_of(comp.name) else pytest.mark.skip(
            reason=f"{comp.qualified_name}: multimodal.classifier takes an encoder for modality m only when its "
                   f"name starts with 'm.' ({', '.join(m + '.' for m in MODALITIES)}); name it "
                   f"'<modality>.{comp.name.rpartition(':')[2].replace('.', '_')}' for the classifier "
                   "(docs/multimodal.md section 2)")
        cases.append(pytest.param(comp, marks=marks, id=comp.qualified_name))
    return cases


ENCODERS = encoder_cases(HOST) if HAS_CLASSIFIER else []
FUSIONS = HOST.components("fusion") if HAS_CLASSIFIER else []


def classifier(host, **options):  # noqa: ANN001, ANN003, ANN201
    """A ``multimodal.classifier`` of ``host`` with the tiny built-in encoders under ``options``."""
    from deepseek.models.factory import instantiate_model

    torch.manual_seed(0)
    cls = host.resolve("model", "multimodal.classifier").load()
    keys = {**TINY, "num_classes": CLASSES, "modality_dropout": 0.5, "aux_loss_weight": 0.5,
            "contrastive_weight": 0.5, **options}
    return instantiate_model(cls, keys, name="multimodal.classifier", host=host)


def example_batch(model, patterns: list[tuple[str, ...]]) -> dict:  # noqa: ANN001
    """A batch of ``len(patterns)`` samples from each encoder's ``example_inputs``; sample ``i``
    has the modalities ``patterns[i]``."""
    batch: dict = {"present": {}, "label": torch.arange(len(patterns)) % CLASSES}
    for m in model.modalities:
        example = model.encoders[m].example_inputs(len(patterns))
        assert example is not None, f"encoder {model.encoder_labels[m]} gives no example_inputs() (docs/multimodal.md section 2)"
        inputs, mask = example
        batch[m] = {"inputs": inputs} if mask is None else {"inputs": inputs, "padding_mask": mask}
        batch["present"][m] = torch.tensor([m in p for p in patterns])
    return batch


def check_in_classifier(model, where: str, plugin: torch.nn.Module, doc: str) -> None:  # noqa: ANN001
    """Asserts the module's contract on ``model``, in which ``plugin`` (``where``) is the part
    under test."""
    from deepseek_enterprise.multimodal_data import check_batch

    mods = model.modalities
    # Every non-empty mix of the model's modalities, one per sample (a batch needs one present).
    patterns = [s for r in range(len(mods), 0, -1) for s in itertools.combinations(mods, r)]
    batch = example_batch(model, patterns)
    check_batch(model, batch, model)  # as a training run checks its first batch: check_inputs included
    model.train()
    out = model(**batch)
    assert torch.isfinite(out["loss"]), f"{where}: non-finite loss of multimodal.classifier on example_inputs ({doc})"
    check_forward_in_16_bits(model, batch, f"{where}: multimodal.classifier", doc)  # a copy, under DeepSpeed's bf16
    out["loss"].backward()
    check_every_parameter_trains(plugin, where=where, source="the loss of multimodal.classifier", doc=doc)
    model.eval()
    logits = model.predict(batch).logits
    assert logits.shape == (len(patterns), CLASSES), f"{where}: fused logits of shape {tuple(logits.shape)} ({doc})"
    bad = [patterns[i] for i in (~torch.isfinite(logits).all(-1)).nonzero().flatten().tolist()]
    assert not bad, f"{where}: non-finite logits for samples with only modalities {bad}; keep every mix finite ({doc})"


def encoder_model(host, comp):  # noqa: ANN001, ANN201
    """``comp`` (a registered encoder), with its defaults, and a tiny built-in encoder of another
    modality in a ``late``-fusion classifier."""
    m = modality_of(comp.name)
    other = next(o for o in MODALITIES if o != m)
    return classifier(host, modalities=[m, other], fusion="late", fusion_options={"d_model": 8},
                      **{f"{m}_encoder": comp.qualified_name, m: None if m == "text" else {}})


@pytest.mark.parametrize("comp", ENCODERS)
def test_encoder_trains_inside_the_classifier(comp) -> None:  # noqa: ANN001
    model = encoder_model(HOST, comp)
    m = modality_of(comp.name)
    check_in_classifier(model, f"encoder {comp.qualified_name}", model.encoders[m], "docs/multimodal.md section 2")


@pytest.mark.parametrize("comp", FUSIONS, ids=[c.qualified_name for c in FUSIONS])
def test_fusion_trains_inside_the_classifier(comp) -> None:  # noqa: ANN001
    model = classifier(HOST, modalities=list(MODALITIES), fusion=comp.qualified_name)
    check_in_classifier(model, f"fusion {comp.qualified_name}", model.fusion, "docs/multimodal.md section 3")


# The checks above refuse a broken plugin: one registered on a host of this test.

def _host_with(plugin: object):  # noqa: ANN202
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings

    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    assert host.register_plugin(plugin, dist="acme-broken", version="1.0").status == "ok"
    return host


@pytest.mark.skipif(not HAS_CLASSIFIER, reason="no multimodal.classifier here (deepseek-enterprise adds it)")
def test_a_fusion_returning_the_wrong_shape_fails_inside_the_classifier() -> None:
    from deepseek import hookimpl
    from deepseek_enterprise.fusion import LateFusion

    class Flat(LateFusion):
        """Late fusion whose fused logits lose the class axis."""

        def forward(self, features, present):  # noqa: ANN001, ANN201
            out = super().forward(features, present)
            return out._replace(logits=out.logits.sum(-1))

    class Acme:
        @hookimpl
        def deepseek_register_fusions(self, register):  # noqa: ANN001, ANN202
            register("acme.flat", Flat, description="wrong shape")

    host = _host_with(Acme())
    model = classifier(host, modalities=list(MODALITIES), fusion="acme.flat")
    with pytest.raises(PluginError, match=r"^model\.fusion: fusion 'acme\.flat' .*: forward returned logits of shape "
                                          r"\(7,\), expected \(7, 3\)"):
        check_in_classifier(model, "fusion acme.flat", model.fusion, "docs/multimodal.md section 3")


@pytest.mark.skipif(not HAS_CLASSIFIER, reason="no multimodal.classifier here (deepseek-enterprise adds it)")
def test_a_fusion_with_an_fp32_attention_mask_fails_inside_the_classifier_in_bf16() -> None:
    """Late fusion whose pooled text embedding goes through attention with an fp32 float mask
    buffer: fine in fp32 and on the CPU in bf16, refused by CUDA once DeepSpeed's bf16 casts the
    parameters alone (the mask stays fp32 beside bf16 queries)."""
    from deepseek import hookimpl
    from deepseek_enterprise.fusion import LateFusion

    class Masked(LateFusion):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            self.register_buffer("mask", torch.zeros(1, 1))

        def forward(self, features, present):  # noqa: ANN001, ANN201
            out = super().forward(features, present)
            q = out.pooled["text"][:, None, :]
            text = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=self.mask)[:, 0]
            return out._replace(pooled={**out.pooled, "text": text})

    class Acme:
        @hookimpl
        def deepseek_register_fusions(self, register):  # noqa: ANN001, ANN202
            register("acme.masked", Masked, description="an fp32 attention mask")

    host = _host_with(Acme())
    model = classifier(host, modalities=list(MODALITIES), fusion="acme.masked", fusion_options={"d_model": 8})
    with pytest.raises(AssertionError, match=r"^fusion acme\.masked: multimodal\.classifier: attention masks of another "
                                             r"dtype than the queries' with bf16 parameters \[\(torch\.bfloat16, "
                                             r"torch\.float32\)\]"):
        check_in_classifier(model, "fusion acme.masked", model.fusion, "docs/multimodal.md section 3")


@pytest.mark.skipif(not HAS_CLASSIFIER, reason="no multimodal.classifier here (deepseek-enterprise adds it)")
def test_an_encoder_with_a_parameter_the_classifier_never_trains_fails_inside_it() -> None:
    from deepseek import hookimpl
    from deepseek_enterprise.encoders import AudioConvTransformer

    class Idle(AudioConvTransformer):
        """Conv-transformer audio with a parameter its forward never uses."""

        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            self.idle = torch.nn.Parameter(torch.zeros(2))

    class Acme:
        @hookimpl
        def deepseek_register_encoders(self, register):  # noqa: ANN001, ANN202
            register("audio.idle", Idle, description="an unused parameter")

    host = _host_with(Acme())
    model = encoder_model(host, host.resolve("encoder", "audio.idle"))
    with pytest.raises(AssertionError, match=r"^parameters \['idle'\] get no gradient from the loss of multimodal\.classifier"):
        check_in_classifier(model, "encoder audio.idle", model.encoders["audio"], "docs/multimodal.md section 2")


@pytest.mark.skipif(not HAS_CLASSIFIER, reason="no multimodal.classifier here (deepseek-enterprise adds it)")
def test_an_encoder_named_without_its_modality_is_a_skipped_case_saying_so() -> None:
    """An encoder registered as ``acme.patches`` (plugins.md's ``acme.*`` prefix rule read alone)
    loads and passes test_encoders_contract.py, but ``multimodal.classifier`` never takes it: its
    case here is skipped with the rule and the name to use, not left out of the suite."""
    from deepseek import hookimpl
    from deepseek_enterprise.encoders import AudioConvTransformer

    class Acme:
        @hookimpl
        def deepseek_register_encoders(self, register):  # noqa: ANN001, ANN202
            register("acme.patches", AudioConvTransformer, description="no modality in the name")
            register("audio.acme_frames", AudioConvTransformer, description="named for its modality")

    cases = {c.id: c for c in encoder_cases(_host_with(Acme())) if c.id.startswith("acme-broken:")}
    assert sorted(cases) == ["acme-broken:acme.patches", "acme-broken:audio.acme_frames"]
    assert cases["acme-broken:audio.acme_frames"].marks == ()
    (mark,) = cases["acme-broken:acme.patches"].marks
    assert mark.name == "skip" and mark.kwargs["reason"].startswith(
        "acme-broken:acme.patches: multimodal.classifier takes an encoder for modality m only when its name starts "
        "with 'm.' (vision., audio., text.); name it '<modality>.acme_patches'")
