"""``multimodal.classifier`` takes an encoder for modality ``m`` only when its name starts with
``m.``; a name that does not is refused in one line naming the registered encoders of that
modality, with a did-you-mean over them, where the plugin host is known: when the config loads
(``config_from_dict``: the ``[model.<m>]`` table's ``options_of`` rule) and when the model is
built from options directly. Encoders here are registered in process, as a plugin would."""

from __future__ import annotations

import pytest
from _hosts import enterprise_host, registering

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import PluginHost
from deepseek_enterprise.encoders import SwinEncoder


class RowsEncoder(SwinEncoder):
    """A vision encoder of the plugin's (a Swin, as far as these checks go)."""


LINE = ("model.vision_encoder: {name!r} is not a vision encoder{hint}; give a registered 'vision.*' encoder: "
        "vision.acme_rows, vision.swin (see 'deepseek plugins list'; registered in-process? pass the host= it was "
        "registered on)")
TINY = {"img_size": 8, "patch_size": 4, "embed_dim": 8, "depths": [1], "num_heads": [1], "window_size": 2,
        "in_chans": 1}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    acme = registering("deepseek_register_encoders", {"vision.acme_rows": RowsEncoder, "acme.rows": RowsEncoder})
    return enterprise_host((acme, "acme-encoders"))


@pytest.mark.parametrize(("name", "hint"), [
    ("acme.rows", " (did you mean 'vision.acme_rows'?)"),  # registered, by plugins.md's acme.* rule for other kinds
    ("audio.conv_transformer", ""),                         # an encoder of another modality
])
def test_a_wrong_encoder_name_names_the_registered_ones_of_its_modality(host: PluginHost, name: str,
                                                                        hint: str) -> None:
    line = LINE.format(name=name, hint=hint)
    config = {"model": {"name": "multimodal.classifier", "modalities": ["vision", "text"], "vision_encoder": name},
              "data": {"name": "multimodal.digits"}}
    with pytest.raises(ConfigError) as loading:
        config_from_dict(config, host=host)
    assert str(loading.value) == line
    cls = host.resolve("model", "multimodal.classifier").load()
    with pytest.raises(ConfigError) as building:
        instantiate_model(cls, {"modalities": ["vision"], "vision_encoder": name, "vision": TINY},
                          name="multimodal.classifier", host=host)
    assert str(building.value) == line
    # the plugin's encoder under its right name loads, its table filled in by its Options
    config["model"].update(vision_encoder="vision.acme_rows", vision=TINY)
    assert config_from_dict(config, host=host).model.options.vision["embed_dim"] == 8
