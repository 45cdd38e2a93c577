"""The fusion output contract is checked where ``multimodal.classifier`` meets a fusion method,
as the encoder contract is (test_encoder_contract_checks.py): when it is created (a declared
return type other than ``FusionOutput``) and on every output (``FusionOutput``, logits and
``modality_logits`` ``(B, num_classes)``, ``pooled`` ``(B, d_model)``). A broken output or
declaration is the plugin's bug: one PluginError line naming the fusion, the distribution that
registered it, the expected and the returned shape (calls.broken_answer, the encoders' rule; the
CLI exits 1). What a fusion's forward raises is one line naming the fusion and its distribution;
the CLI exits 1 too (a bug in a plugin, as for one that fails to load)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from _hosts import enterprise_host, registering

from deepseek.errors import PluginError, UsageError
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import PluginHost
from deepseek_enterprise.fusion import Fusion, FusionOutput, LateFusion


class WideLogits(Fusion):
    """One logit too many: cross-entropy takes it for labels below num_classes."""

    def __init__(self, options, *, dims, num_classes):  # type: ignore[no-untyped-def]
        super().__init__(options, dims=dims, num_classes=num_classes)
        self.out = torch.nn.Linear(options.d_model, num_classes + 1)

    def forward(self, features, present):  # type: ignore[no-untyped-def]
        pooled = self.pool(features)
        return FusionOutput(self.out(sum(pooled.values())), self.classify(pooled), pooled)


class NarrowPooled(Fusion):
    def forward(self, features, present):  # type: ignore[no-untyped-def]
        pooled = self.pool(features)
        logits = self.classify(pooled)
        return FusionOutput(sum(logits.values()), logits, {m: v[:, :3] for m, v in pooled.items()})


class MissingModality(LateFusion):
    def forward(self, features, present):  # type: ignore[no-untyped-def]
        out = super().forward(features, present)
        return out._replace(modality_logits={})


class BareTensor(Fusion):
    def forward(self, features, present):  # type: ignore[no-untyped-def]
        return sum(self.classify(self.pool(features)).values())


class Raises(Fusion):
    def forward(self, features, present):  # type: ignore[no-untyped-def]
        raise ValueError("boom inside fusion forward")


class DeclaresTensor(Fusion):
    def forward(self, features, present) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return sum(self.classify(self.pool(features)).values())


class RaisesInInit(Fusion):
    def __init__(self, options, *, dims, num_classes):  # type: ignore[no-untyped-def]
        raise KeyError("no such layer")


@dataclasses.dataclass(frozen=True)
class PlainOptions:  # does not extend FusionBaseOptions, so it has no d_model
    gate: float = 1.0


class PlainOptionsFusion(LateFusion):
    Options = PlainOptions


FUSIONS = {"plainopts": PlainOptionsFusion, "good": LateFusion, "wide": WideLogits, "narrow": NarrowPooled, "missing": MissingModality,
           "bare": BareTensor, "raises": Raises, "declares": DeclaresTensor, "initraises": RaisesInInit}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    acme = registering("deepseek_register_fusions", {f"acme.{kind}": cls for kind, cls in FUSIONS.items()})
    return enterprise_host((acme, "acme-fusions"))


def _tiny(host: PluginHost, **options: object):  # noqa: ANN202
    """A ``multimodal.classifier`` of 10 classes with tiny vision and text encoders; ``options``
    set its other keys (``modalities`` defaults to vision and text)."""
    cls = host.resolve("model", "multimodal.classifier").load()
    return instantiate_model(cls, {"modalities": ["vision", "text"], "num_classes": 10,
                                   "vision": {"img_size": 8, "patch_size": 4, "embed_dim": 8, "depths": [1],
                                              "num_heads": [1], "window_size": 2, "in_chans": 1},
                                   "text": {"d_model": 8, "n_heads": 2, "n_layers": 1, "max_seq_len": 8},
                                   **options}, name="multimodal.classifier", host=host)


def _classifier(host: PluginHost, kind: str):  # noqa: ANN202
    return _tiny(host, fusion=f"acme.{kind}", fusion_options={"d_model": 16})


def _batch() -> dict:
    ones = torch.ones(3, dtype=torch.bool)
    return {"vision": {"inputs": torch.randn(3, 1, 8, 8)},
            "text": {"inputs": torch.randint(0, 256, (3, 5)), "padding_mask": torch.zeros(3, 5, dtype=torch.bool)},
            "present": {"vision": ones, "text": ones}, "label": torch.tensor([0, 2, 9])}


HEAD = r"^model\.fusion: fusion 'acme\.{}' \(acme-fusions 1\.0, registered by [\w.]+\): "
FIX = r"return FusionOutput\(logits \(B, num_classes\), .* \(docs/multimodal\.md section 3\)"
BUG = r"; a bug in the plugin: upgrade it or report it to its authors$"


@pytest.mark.parametrize(("kind", "words"), [
    ("wide", r"forward returned logits of shape \(3, 11\), expected \(3, 10\); "),
    ("narrow", r"forward returned pooled\['vision'\] of shape \(3, 3\), expected \(3, 16\); "),
    ("missing", r"forward returned modality_logits \[\], not one entry per modality \['vision', 'text'\]; "),
    ("bare", r"forward returned a Tensor, not a FusionOutput; "),
])
def test_a_broken_output_is_one_line_naming_fusion_and_distribution(host: PluginHost, kind: str, words: str) -> None:
    """The plugin's bug (a PluginError, exit 1): it was a UsageError, exit 2, as if the config were wrong."""
    model = _classifier(host, kind)
    for mode in (model.train, model.eval):
        mode()
        with pytest.raises(PluginError, match=HEAD.format(kind) + words + FIX + BUG):
            model(**_batch())
    with pytest.raises(PluginError, match=HEAD.format(kind) + words):
        model.predict(_batch())


def test_what_forward_raises_names_the_fusion_and_its_distribution(host: PluginHost) -> None:
    model = _classifier(host, "raises")
    with pytest.raises(PluginError, match=HEAD.format("raises") + r"forward raised ValueError: boom inside fusion "
                                          r"forward; a bug in the plugin") as info:
        model(**_batch())
    assert not isinstance(info.value, UsageError)  # exit 1: the plugin's bug, not the user's input
    with pytest.raises(PluginError, match=HEAD.format("initraises") + r"__init__ raised KeyError: 'no such layer'"):
        _classifier(host, "initraises")


def test_a_declared_return_type_other_than_fusion_output_is_refused_when_created(host: PluginHost) -> None:
    with pytest.raises(PluginError, match=HEAD.format("declares") + r"DeclaresTensor\.forward declares it returns "
                                          r"<class 'torch\.Tensor'>, not FusionOutput; " + FIX + BUG):
        _classifier(host, "declares")


@pytest.mark.usefixtures("one_thread")  # the count the test found is put back after it, however it ended
def test_a_working_fusion_passes_and_the_check_costs_nothing_noticeable(host: PluginHost) -> None:
    """The check reads shapes and dtypes only: under 2% of a forward of a tiny classifier."""
    from deepseek_enterprise.fusion import check_output

    model = _classifier(host, "good").eval()
    batch = _batch()
    with torch.no_grad():
        assert model(**batch)["logits"].shape == (3, 10)
        present = {m: batch["present"][m] for m in model.modalities}
        out = model.fusion(model.encode(batch), present)

    def best(call, calls: int = 100) -> float:  # noqa: ANN001
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                call()
            times.append(time.perf_counter() - start)
        return min(times) / calls

    with torch.no_grad():
        forward = best(lambda: model(**batch))
    check = best(lambda: check_output(model.fusion, out, 3, 10, "label"))
    assert check < 0.02 * forward, (check, forward)


def test_a_fusion_whose_options_miss_the_base_is_named_before_its_keys_are_read(host: PluginHost) -> None:
    """d_model, a key every fusion takes, is not blamed as unknown: the plugin's Options are, as its
    bug (PluginError, exit 1), not the config's (a ConfigError naming model.fusion before)."""
    from deepseek.config.load import config_from_dict

    for table in ({"d_model": 16}, {}):
        with pytest.raises(PluginError, match=r"^model\.fusion: fusion 'acme\.plainopts' \(acme-fusions 1\.0, "
                                              r"registered by .*\): declares Options .*PlainOptions.*, which does not "
                                              r"extend deepseek_enterprise\.fusion\.FusionBaseOptions .*; a bug in the "
                                              r"plugin: upgrade it or report it to its authors$"):
            config_from_dict({"model": {"name": "multimodal.classifier", "fusion": "acme.plainopts",
                                        "fusion_options": table}, "data": {"name": "multimodal.digits"}}, host=host)


def test_a_modality_the_data_lacks_names_model_modalities_and_what_the_data_carries(host: PluginHost) -> None:
    model = _tiny(host, modalities=["vision", "audio", "text"])

    class Segments:
        pass

    with pytest.raises(UsageError, match=r"^model\.modalities: \['vision', 'audio', 'text'\] includes \['audio'\], "
                                         r"which batches of dataset Segments lack; set model\.modalities to a subset of "
                                         r"those it carries, \['vision', 'text'\], or use a dataset with \['audio'\]$"):
        model.check_data(_batch(), Segments())


def test_non_finite_inputs_of_an_absent_modality_are_refused_before_training(host: PluginHost) -> None:
    """A NaN marking a missing image (a common convention) would reach every encoder's output and
    make the loss NaN, read as a diverged run; the first batch is refused naming the data."""
    model = _tiny(host, fusion="late")

    class HoleyImages:
        pass

    batch = _batch()
    model.check_data(batch, HoleyImages())  # finite: accepted
    batch["vision"]["inputs"][1] = float("nan")
    batch["present"] = {"vision": torch.tensor([True, False, True]), "text": torch.ones(3, dtype=torch.bool)}
    model.train()
    assert not torch.isfinite(model(**batch)["loss"])  # what the check spares the user
    with pytest.raises(UsageError, match=r"^data: dataset HoleyImages gives non-finite vision inputs \(NaN or inf\) "
                                         r"in 1 of 3 rows, 1 of them marked absent in present; encoders run on every "
                                         r"row, so the loss would be NaN: give an absent modality finite inputs, such "
                                         r"as zeros \(docs/multimodal\.md section 1\)$"):
        model.check_data(batch, HoleyImages())
    batch["vision"]["inputs"][1] = 0.0
    model.check_data(batch, HoleyImages())
