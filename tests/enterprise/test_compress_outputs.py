"""Paths ``deepseek compress`` writes to are checked before any work: a ``--json`` path that is a
folder is one line, exit 2, with no output run folder made (it was an internal error after the
compressed run had been written)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here


def test_a_json_path_that_is_a_folder_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "reports").mkdir()
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "compress", "--checkpoint", "run", "--method", "quantize.int8",
                                 "--out", "small", "--json", "reports")
    assert code == 2, err
    assert err.splitlines() == ["error: --json: reports is a folder; give a file path, e.g. reports/compression.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
