"""Without the ``hf`` extra (the core-only session): a BPE tokenizer, the ``hf`` dataset and
``deepseek tokenizer`` are refused in one line naming ``pip install 'deepseek-core[hf]'``, and
nothing is written."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path
from typing import Any

import pytest

from deepseek.cli.main import main
from deepseek.config.load import config_from_dict
from deepseek.errors import ConfigError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tokenizers") is not None or importlib.util.find_spec("datasets") is not None,
    reason="the hf extra is installed here (tests/ecosystem covers it)",
)
INSTALL = "pip install 'deepseek-core[hf]'"


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(PluginSettings(autoload=False))


def refused(host: PluginHost, *argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv), host=host)
        except SystemExit as exc:
            code = exc.code
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out.getvalue(), err.getvalue())
    return lines[0]


def test_data_tokenizer_names_the_extra(host: PluginHost, tmp_path: Path) -> None:
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    with pytest.raises(ConfigError, match=r"^data\.tokenizer: .*" + INSTALL.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict({"data": {"tokenizer": str(tok)}}, host=host)
    line = refused(host, "train", "--set", f'data.tokenizer="{tok}"', "--run-dir", str(tmp_path / "run"))
    assert "data.tokenizer" in line and INSTALL in line
    assert not (tmp_path / "run").exists()


def test_hf_dataset_names_the_extra(host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"text": "hello"}\n')
    line = refused(host, "train", "--set", "data.name=hf", "--set", f'data.files=["{tmp_path / "a.jsonl"}"]',
                   "--run-dir", str(tmp_path / "run"))
    assert "'hf' dataset" in line and INSTALL in line
    assert not (tmp_path / "run").exists()


def test_tokenizer_commands_name_the_extra(host: PluginHost, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha beta " * 50)
    line = refused(host, "tokenizer", "train", "--data", str(tmp_path / "c.txt"), "--out", str(tmp_path / "t.json"))
    assert INSTALL in line and not (tmp_path / "t.json").exists()
    (tmp_path / "t2.json").write_text("{}")
    assert INSTALL in refused(host, "tokenizer", "info", str(tmp_path / "t2.json"))


def test_byte_runs_need_no_extra(host: PluginHost) -> None:
    config = config_from_dict({}, host=host)
    assert config.data.options.tokenizer == "" and config.model.options.vocab_size == 256
