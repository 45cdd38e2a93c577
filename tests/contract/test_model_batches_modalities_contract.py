"""The model contract's call on a batch (:mod:`_pairing`) builds ``multimodal.classifier``
(deepseek-enterprise) with the modalities a dataset's batches carry, as a config of the pair names
them, and with its encoders' keys that follow the inputs' shapes (an image size, a frame width), so
a plugin's multimodal dataset of fewer modalities or other shapes is called with it, the
compressors suite builds it by the same rule, and a dataset of the kind it reads that it refuses
all the same is reported, not passed over (docs/plugins.md section 9). Skipped where
deepseek-enterprise is not installed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _labelled import LabelledBatches
from _pairing import FirstBatches, call_on_batches, pair_table, tiny_model

from deepseek import hookimpl
from deepseek.config.load import config_from_dict
from deepseek.errors import UsageError
from deepseek.models.checks import check_model_data
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings
from deepseek.training.build import build_model


@dataclass(frozen=True)
class PicturesOptions:
    classes: int = 3


class Pictures(LabelledBatches):
    """A multimodal dataset of two modalities (docs/multimodal.md section 1's layout without
    ``audio``): 8x8 images and UTF-8 spellings of their class, labels ``0 .. classes - 1``."""

    Options = PicturesOptions

    def _batch(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(index)
        label = torch.randint(0, self.options.classes, (self.batch_size,), generator=g)
        text = torch.zeros(self.batch_size, 6, dtype=torch.int64)
        padding = torch.ones(self.batch_size, 6, dtype=torch.bool)
        for row, word in enumerate(f"class{int(c)}" for c in label):
            text[row, :len(word)] = torch.tensor(list(word.encode()))
            padding[row, :len(word)] = False
        present = torch.ones(self.batch_size, dtype=torch.bool)
        return {"vision": {"inputs": torch.rand(self.batch_size, 1, 8, 8, generator=g)},
                "text": {"inputs": text, "padding_mask": padding},
                "present": {"vision": present, "text": present.clone()}, "label": label}


class PicturesPlugin:
    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.pictures", Pictures, description="images and spelled classes")


def test_a_multimodal_dataset_of_fewer_modalities_is_called_with_a_classifier_of_its_own(tmp_path: Path) -> None:
    # multimodal.classifier takes the modalities a dataset's batches carry, as a config of the pair
    # names them (model.modalities = ["vision", "text"]); built from its defaults (all three) it
    # refused this dataset, so a plugin's two-modality dataset was never called with it.
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    if "multimodal.classifier" not in host.names("model"):
        pytest.skip("multimodal.classifier is deepseek-enterprise's; not installed here")
    assert host.register_plugin(PicturesPlugin(), dist="acme-pictures").status == "ok"
    calls = call_on_batches(host, "deepseek-enterprise:multimodal.classifier", tmp_path)
    assert "acme-pictures:acme.pictures" in calls.outputs, calls.refused
    loss, metrics = calls.outputs["acme-pictures:acme.pictures"]
    assert loss.dim() == 0 and loss.item() > 0
    assert sorted(metrics) == ["accuracy", "accuracy_text", "accuracy_vision"]  # what a classifier of the two declares
    data, val, _train = FirstBatches(host, tmp_path / "again").get("acme-pictures:acme.pictures")
    model = tiny_model(host, "deepseek-enterprise:multimodal.classifier", data, val)
    assert model.modalities == ["vision", "text"] and model.options.num_classes == 3


@dataclass(frozen=True)
class ShapesOptions:
    classes: int = 3
    height: int = 28
    width: int = 28
    features: int = 40


class Shapes(LabelledBatches):
    """Vision and audio of other shapes than the built-in encoders' defaults: ``height x width``
    images and frames of ``features`` coefficients (the second half of the last row padding)."""

    Options = ShapesOptions

    def _batch(self, index: int) -> dict[str, Any]:
        o, g = self.options, torch.Generator().manual_seed(index)
        padding = torch.zeros(self.batch_size, 10, dtype=torch.bool)
        padding[-1, 5:] = True
        present = torch.ones(self.batch_size, dtype=torch.bool)
        return {"vision": {"inputs": torch.rand(self.batch_size, 1, o.height, o.width, generator=g)},
                "audio": {"inputs": torch.randn(self.batch_size, 10, o.features, generator=g).masked_fill(
                    padding[..., None], 0.0), "padding_mask": padding},
                "present": {"vision": present, "audio": present.clone()},
                "label": torch.randint(0, o.classes, (self.batch_size,), generator=g)}



@dataclass(frozen=True)
class WideOptions(ShapesOptions):
    width: int = 20


class Wide(Shapes):
    """Images 28 high and 20 wide: ``vision.swin``'s ``img_size`` and ``img_width``."""

    Options = WideOptions


class Flat(Shapes):
    """Images without their channel dimension, ``(B, 28, 28)``: no ``vision.swin`` key makes it take them."""

    def _batch(self, index: int) -> dict[str, Any]:
        batch = super()._batch(index)
        return {**batch, "vision": {"inputs": batch["vision"]["inputs"][:, 0]}}


@dataclass(frozen=True)
class OneClassOptions(ShapesOptions):
    classes: int = 1


class OneClass(Shapes):
    """One class: the classifier built with the modalities it carries refuses ``num_classes = 1``."""

    Options = OneClassOptions


class ShapesPlugin:
    @hookimpl
    def deepseek_register_datasets(self, register: Any) -> None:
        register("acme.shapes", Shapes, description="28x28 images and 40-coefficient frames")
        register("acme.wide", Wide, description="28x20 images and 40-coefficient frames")
        register("acme.flat", Flat, description="28x28 images without a channel dimension")
        register("acme.one_class", OneClass, description="28x28 images and 40-coefficient frames of one class")


CLASSIFIER = "deepseek-enterprise:multimodal.classifier"


def _host(plugin: Any, dist: str) -> PluginHost:
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"})))
    if "multimodal.classifier" not in host.names("model"):
        pytest.skip("multimodal.classifier is deepseek-enterprise's; not installed here")
    assert host.register_plugin(plugin, dist=dist).status == "ok"
    return host


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[PluginHost, FirstBatches, Any]:
    """The classifier called on the datasets of a host with :class:`ShapesPlugin`, once for the module."""
    host = _host(ShapesPlugin(), "acme-shapes")
    batches = FirstBatches(host, tmp_path_factory.mktemp("shapes"))
    return host, batches, call_on_batches(host, CLASSIFIER, tmp_path_factory.mktemp("calls"), batches)


def test_a_multimodal_dataset_of_other_shapes_is_called_with_encoders_built_for_them(shapes: Any, tmp_path: Path
                                                                                      ) -> None:
    # The built-in encoders at their defaults take 8x8 images and 13-coefficient frames; a plugin's
    # 28x28 images and 40-coefficient frames were refused ("images must be (batch, 1, 8, 8)"), so
    # the classifier was never called on them. Their keys follow the inputs (keys_for_inputs).
    host, batches, calls = shapes
    assert "acme-shapes:acme.shapes" in calls.outputs, calls.refused
    loss, metrics = calls.outputs["acme-shapes:acme.shapes"]
    assert loss.dim() == 0 and loss.item() > 0
    assert sorted(metrics) == ["accuracy", "accuracy_audio", "accuracy_vision"]
    data, val, _train = batches.get("acme-shapes:acme.shapes")
    model = tiny_model(host, CLASSIFIER, data, val)
    assert model.modalities == ["vision", "audio"]
    assert model.options.vision == {"img_size": 28} and model.options.audio == {"n_features": 40}
    # images that are not square: timm's Swin takes (height, width), img_size and img_width (was
    # refused: keys_for_inputs gave keys for square images only)
    assert "acme-shapes:acme.wide" in calls.outputs, calls.refused
    wide, wide_val, _train = batches.get("acme-shapes:acme.wide")
    assert tiny_model(host, CLASSIFIER, wide, wide_val).options.vision == {"img_size": 28, "img_width": 20}
    # the classifier's own refusal at the encoders' defaults names the keys a config sets
    config = config_from_dict(pair_table(host, CLASSIFIER, "acme-shapes:acme.shapes", tmp_path / "pair", {},
                                         {"modalities": ["vision", "audio"]}), host=host)
    plain = build_model(config, host=host)
    with pytest.raises(UsageError, match=r"images must be \(batch, 1, 8, 8\), got shape \(4, 1, 28, 28\) "
                       r"\(dataset Shapes\); set model\.vision\.img_size = 28$"):
        check_model_data(plain, val, data, model_name=CLASSIFIER)


def test_a_refused_dataset_of_the_kind_the_model_reads_is_reported_not_passed(shapes: Any) -> None:
    # images without a channel dimension no vision.swin key fits: the classifier refuses the dataset, and
    # a test that passed on the datasets it took said nothing of it; it now names the dataset and the refusal.
    # A refusal while building it with the dataset's modalities (one class) is that dataset's
    # too: it stopped the whole call (the fixture's ConfigError), no dataset checked.
    _host_, _batches, calls = shapes
    assert "acme-shapes:acme.shapes" in calls.outputs, calls.refused
    assert list(calls.unfit) == ["acme-shapes:acme.flat", "acme-shapes:acme.one_class"], calls.refused
    assert calls.unfit["acme-shapes:acme.one_class"].startswith("model.num_classes: must be in 2..")
    assert "deepseek-core:text" in calls.refused  # no modality: not of the kind it reads, not reported
    reason = calls.unchecked_reason(CLASSIFIER)
    assert reason is not None and "\n" not in reason, reason
    assert reason.startswith(f"model {CLASSIFIER!r} refuses dataset(s) whose batches carry what it reads")
    assert "acme-shapes:acme.flat: model.vision: encoder vision.swin: images must be (batch, 1, 8, 8), got " \
           "shape (4, 28, 28) (dataset Flat); acme-shapes:acme.one_class: model.num_classes: must be in 2.." in reason, \
        reason


def test_the_compressors_suite_builds_the_classifier_as_the_model_suite_does(tmp_path: Path) -> None:
    # The compressors' subject of multimodal.classifier was built with all three modalities (the
    # default), so a plugin's dataset of two was refused there though the model suite called it.
    host = _host(PicturesPlugin(), "acme-pictures")
    from test_compressors_contract import Subjects

    subject = Subjects(tmp_path, {}, host).get(CLASSIFIER)
    assert not isinstance(subject, str), subject
    assert subject.config.data.name == "acme-pictures:acme.pictures"
    assert tuple(subject.config.model.options.modalities) == ("vision", "text")
    assert subject.model().modalities == ["vision", "text"]
