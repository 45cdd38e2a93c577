"""An empty (or blank) path given to an enterprise command is one line naming the option, exit
code 2, before anything is read or written; it was taken for the current folder (``compress
--out ''``: '. is not empty'; ``--checkpoint ''``: the working folder read as a run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _inprocess import deepseek_here

CASES = [
    (["compress", "--checkpoint", "", "--out", "o", "--method", "prune.ffn"], "--checkpoint"),
    (["compress", "--checkpoint", "run", "--out", " ", "--method", "prune.ffn"], "--out"),
    (["compress", "--checkpoint", "run", "--out", "o", "--method", "prune.ffn", "--json", ""], "--json"),
    (["compare", "", "run"], "RUN_A"),
    (["compare", "run", "run", "--json", ""], "--json"),
    (["tune", "", "--study", "s", "--space", "space.toml"], "CONFIG.toml"),
    (["tune", "c.toml", "--study", "s", "--space", ""], "--space"),
    (["tune", "c.toml", "--study", "s", "--space", "space.toml", "--out", ""], "--out"),
    (["multimodal", "study", "--out", ""], "--out"),
    (["multimodal", "eval", "--checkpoint", ""], "--checkpoint"),
    (["multimodal", "eval", "--checkpoint", "run", "--confusion", ""], "--confusion"),
    (["jobs", "submit", "--config", "", "train"], "--config"),
    (["jobs", "submit", "--file", "", "train"], "--file"),
    (["jobs", "download", "1", "--out", ""], "--out"),
    (["jobs", "download", "1", ""], "PATH"),  # was the whole workspace, as if no PATH were given
    (["jobs", "files", "1", " "], "PATH"),  # was the whole listing
]


@pytest.mark.parametrize(("args", "option"), CASES)
def test_an_empty_path_is_refused_naming_the_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    args: list[str], option: str) -> None:
    monkeypatch.setenv("DEEPSEEK_SERVER", "http://127.0.0.1:1")  # refused before any request
    monkeypatch.setenv("DEEPSEEK_TOKEN", "dsk_000000000000.xxxxxxxxxxxxxxxxxxxxxxxx")
    code, err, out = deepseek_here(monkeypatch, tmp_path, *args)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and option in err and "is an empty path" in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["s\n", "s\x1b[31m", "s\tx"])
def test_a_tune_study_name_with_a_control_character_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               name: str) -> None:
    """--study names the study's folder: 's\\n' (a trailing line break) got past its pattern's '$'
    and made the folder 's\\n'."""
    (tmp_path / "c.toml").write_text("[train]\nmax_steps = 2\n")
    (tmp_path / "space.toml").write_text('[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n')
    before = sorted(tmp_path.iterdir())
    code, err, out = deepseek_here(monkeypatch, tmp_path, "tune", "c.toml", "--study", name, "--space", "space.toml",
                                   "--trials", "1")
    assert (code, out) == (2, ""), err
    assert err.splitlines() == [f"error: --study {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)"]
    assert sorted(tmp_path.iterdir()) == before
