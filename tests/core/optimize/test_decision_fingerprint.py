"""The decision cache's key holds a fingerprint of the deciding code (deepseek.graph's modules and
the spec's passes' own): a development install, whose version does not change, replayed a decision
made before a fix of the capture or of a pass."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import deepseek
from deepseek import optimize
from deepseek.graph import cache
from deepseek.graph.plan import STATS

PASS = '''
from deepseek.graph.passes import GraphPass


class Noop(GraphPass):
    name = "test.fingerprint-noop"

    def apply(self, gm, example_inputs):
        return None  # {version}
'''


@pytest.fixture
def fresh_digests() -> Iterator[None]:
    """File digests read afresh before and after (a test edits a file or patches the digest)."""
    digest = cache._file_digest
    digest.cache_clear()
    yield
    digest.cache_clear()


def _key(passes: list[object]) -> str:
    return cache.decision_key(torch.nn.Linear(2, 2), ("sig",), "cpu", {"x": 1}, passes)


def test_a_pass_modules_source_is_in_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_digests: None) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    source = tmp_path / "fingerprint_pass_mod.py"
    source.write_text(PASS.format(version="v1"))
    monkeypatch.delitem(sys.modules, "fingerprint_pass_mod", raising=False)
    module = importlib.import_module("fingerprint_pass_mod")
    first = _key([module.Noop()])
    assert _key([module.Noop()]) == first != _key([])
    source.write_text(PASS.format(version="v2"))  # the pass fixed in place, same version
    assert _key([module.Noop()]) == first, "each file is read once per process"
    cache._file_digest.cache_clear()  # a new process
    assert _key([module.Noop()]) != first


def test_a_change_to_the_capture_misses_the_cached_decision(
        _private_cache: Path, monkeypatch: pytest.MonkeyPatch, fresh_digests: None) -> None:
    torch.manual_seed(0)
    model = deepseek.create_model("tiny", n_layers=1).eval()
    x = torch.randint(0, 256, (1, 8), generator=torch.Generator().manual_seed(0))
    first = optimize(model, x, stages=["fx"], runs=1, warmup=0).plan
    assert optimize(model, x, stages=["fx"], runs=1, warmup=0).plan.cache_hit
    digest = cache._file_digest

    def fixed(path: str) -> str:  # capture.py as after a fix
        return "fixed" if Path(path).name == "capture.py" else digest(path)

    monkeypatch.setattr(cache, "_file_digest", fixed)
    before = STATS["searches"]
    again = optimize(model, x, stages=["fx"], runs=1, warmup=0).plan
    assert not again.cache_hit and STATS["searches"] == before + 1
    assert again.cache_path != first.cache_path
