"""The model contract's skip reasons (tests/contract/_pairing.py ``Calls.skip_reason`` and
``unchecked_reason``) end with advice for whoever can act on it (tests/contract/_advice.py): a
first-party model, in the suite only because its edition is installed next to the plugin under
test, is said to be that edition's own, not told to "register a dataset ... in the same plugin"."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "contract"))
from _pairing import Calls  # noqa: E402

from deepseek.plugins.host import PluginHost  # noqa: E402
from deepseek.plugins.settings import PluginSettings  # noqa: E402

OWN = ("it is deepseek-core's own (core (V1)), not the plugin's under test: nothing here for a plugin author "
       "to do")
REFUSED = {"acme:rows": "the batches do not fit"}


def _tiny() -> object:
    return PluginHost(PluginSettings(autoload=False)).resolve("model", "tiny")


def test_a_first_party_model_no_dataset_fits_gives_no_plugin_author_advice() -> None:
    calls = Calls(_tiny(), {}, dict(REFUSED))
    assert calls.skip_reason("tiny") == (
        "model 'tiny': no registered dataset's batches fit it (acme:rows: the batches do not fit), so "
        f"model(**batch) is not checked; {OWN}")


def test_a_plugin_model_no_dataset_fits_is_told_what_to_register() -> None:
    calls = Calls(dataclasses.replace(_tiny(), dist="deepseek-acme"), {}, dict(REFUSED))
    assert calls.skip_reason("tiny").endswith(
        "; register a dataset whose batches it takes (its check_data accepts them, its forward takes their keys) "
        "in the same plugin, and this check calls the model on its first batch")


def test_unchecked_reason_speaks_to_who_can_act() -> None:
    first_party = {"deepseek-core:text": "refused"}
    calls = Calls(_tiny(), {"acme:rows": None}, dict(first_party), unfit=dict(first_party))  # type: ignore[dict-item]
    assert calls.unchecked_reason("tiny") == (
        "model 'tiny' refuses dataset(s) whose batches carry what it reads, so model(**batch) is not checked on "
        f"them: deepseek-core:text: refused (checked on acme:rows); {OWN} (docs/plugins.md section 9)")
    plugin_model = dataclasses.replace(calls, model=dataclasses.replace(_tiny(), dist="deepseek-acme"))
    assert plugin_model.unchecked_reason("tiny").endswith(  # type: ignore[union-attr]
        "; make the model take their batches (its check_data accepts them, its forward takes their keys) "
        "(docs/plugins.md section 9)")
    plugin_data = dataclasses.replace(calls, unfit={"acme:flat": "refused"})
    assert plugin_data.unchecked_reason("tiny").endswith(  # type: ignore[union-attr]
        "; make the dataset's batches what the model takes, or register a model of your own that takes them "
        "(docs/plugins.md section 9)")
