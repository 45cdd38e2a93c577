"""A study that fails while taking up its folder (not only a refusal: an OSError, Ctrl-C, a
plugin's error) leaves no ``.study.lock`` and none of the folders it made behind; a folder
something else wrote into since stays, and the study's own error is the one raised."""

from __future__ import annotations

from pathlib import Path

import pytest


def _settings() -> dict:
    from deepseek_enterprise.study_folder import settings_of

    return settings_of(2, 8, 0.002, "cpu", "joint", 16, None)


def test_a_study_whose_settings_file_cannot_be_written_leaves_nothing(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import deepseek.training.checkpoint as checkpoint
    from deepseek_enterprise.study_folder import start_folder

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "atomic_write_text", full)
    with pytest.raises(OSError, match="No space left on device"), start_folder(tmp_path / "a" / "b", _settings()):
        raise AssertionError("the block must not run")
    assert list(tmp_path.iterdir()) == []  # no lock file, neither made folder


def test_ctrl_c_while_the_lock_is_written_keeps_only_what_is_not_the_studys(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import deepseek.training.run_lock as run_lock
    from deepseek_enterprise.study_folder import start_folder

    out = tmp_path / "a" / "b"

    def interrupted(fd: int) -> None:
        (out / "notes.txt").write_text("another program's file")  # written into the folder meanwhile
        raise KeyboardInterrupt

    monkeypatch.setattr(run_lock, "write_holder", interrupted)
    with pytest.raises(KeyboardInterrupt), start_folder(out, _settings()):
        raise AssertionError("the block must not run")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b", "a/b/notes.txt"]
