"""docs/plugins.md section 6: lifecycle hooks have no config table of their own (a section named
for a plugin is refused when the config loads), so a callback's settings come from environment
variables its ``deepseek_validate_config`` checks. (An outside plugin written from the docs alone
had to find this out by trying ``--set outside4.patience=3``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError


def test_a_plugin_section_is_refused_and_the_docs_say_so() -> None:
    with pytest.raises(ConfigError, match=r"^acme: unknown config section; allowed sections: model, data, "):
        config_from_dict({"acme": {"patience": 3}})
    doc = " ".join((Path(__file__).resolve().parents[3] / "docs" / "plugins.md").read_text(encoding="utf-8").split())
    assert "Lifecycle hooks have no config table of their own: the config's sections are fixed" in doc
    assert ("`error: acme: unknown config section; allowed sections: model, data, ...`). Read a callback's settings "
            "from environment variables of your own") in doc
