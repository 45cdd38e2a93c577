"""The compressor contract's skip reason (tests/contract/test_compressors_contract.py) ends with
advice for whoever can act on it: a plugin's compressor that takes no registered model is told to
register one in the same plugin; a first-party compressor (``recover``, ``distill.student``), in the
suite only because deepseek-enterprise is installed next to the plugin under test, is said to be
that edition's own, with no advice a plugin author could not follow."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contract"))
from test_compressors_contract import COMPRESSORS, untaken_reason  # noqa: E402

REFUSED = {"deepseek-core:1.3b": "recover: trains only inside a --max-drop search"}


def test_a_first_party_compressor_skip_gives_no_plugin_author_advice() -> None:
    comp = next(c for c in COMPRESSORS if c.name == "recover")
    assert untaken_reason(comp, REFUSED) == (
        "compressor deepseek-enterprise:recover takes none of the registered models here (deepseek-core:1.3b: recover: "
        "trains only inside a --max-drop search); it is deepseek-enterprise's own (enterprise (V3)), not the plugin's "
        "under test: nothing here for a plugin author to do")


def test_a_plugin_compressor_skip_tells_its_author_what_to_register() -> None:
    comp = dataclasses.replace(next(c for c in COMPRESSORS if c.name == "recover"), dist="deepseek-acme")
    assert untaken_reason(comp, REFUSED).endswith(
        "); register a model it applies to, and a dataset that model takes, in the same plugin, and this check "
        "compresses it")
    assert untaken_reason(comp, REFUSED).startswith("compressor deepseek-acme:recover takes none")
