"""A ``--storage journal:PATH`` file that is not Optuna's journal (bytes that are not UTF-8,
JSON that is not its records) is one line naming the file, exit 2, before any trial runs (it was
an internal error)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here


@pytest.mark.parametrize(("content", "error"), [
    (b"\xff{not a journal\n", "UnicodeDecodeError"),
    (b"[1, 2]\n", "TypeError"),
    (b'{"op_code": 0}\n', "KeyError"),
])
def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes,
                                                  error: str) -> None:
    (tmp_path / "c.toml").write_text('[train]\nmax_steps = 2\n')
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n')
    (tmp_path / "j.log").write_bytes(content)
    code, err, _ = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", "s", "--space", "space.toml",
                                 "--trials", "1", "--out", "study", "--storage", "journal:j.log")
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --storage: j.log is not a readable Optuna journal ({error}"), err
    assert lines[0].endswith("give this study's journal file, or a new path for a new study"), err
    assert not (tmp_path / "study" / "trials").exists()
    assert (tmp_path / "j.log").read_bytes() == content
