"""JSON and TOML nested past the parser's recursion (a few thousand ``[``) raised RecursionError,
which no "malformed file" handler caught: an "internal error" from ``deepseek train CONFIG``, a
resume, ``eval``, the optimize cache. Now it is a parse error like any other malformed text. (And
``read_file``, which reads such files, asks for no more bytes than the file holds.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from deepseek.config.load import read_toml
from deepseek.errors import ConfigError
from deepseek.parsing import MAX_DEPTH, loads_json, loads_toml, read_file


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 5000])
def test_too_deep_is_a_parse_error(levels: int) -> None:
    with pytest.raises(json.JSONDecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_json("[" * levels + "]" * levels)
    with pytest.raises(tomllib.TOMLDecodeError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_toml("x = " + "[" * levels + "]" * levels)
    with pytest.raises(json.JSONDecodeError, match="nested deeper"):  # dicts count as levels too
        loads_json('{"a": ' * levels + "1" + "}" * levels)


def test_up_to_the_limit_parses_as_before() -> None:
    text = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert loads_json(text) == json.loads(text)
    assert loads_toml("x = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)) == tomllib.loads(
        "x = " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    assert loads_json(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):  # other errors are json's own
        loads_json("[1,")


def test_a_config_file_nested_past_the_stack_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("[train]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"deep\.toml: not a config: its values are nested deeper than 64 levels"):
        read_toml(path)
    out = subprocess.run([sys.executable, "-m", "deepseek", "train", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [f"error: {path}: not a config: its values are nested deeper than 64 "
                                               "levels of arrays and tables (a config's are a few); check the path "
                                               "and the file"]


def test_a_small_file_is_read_without_taking_its_readers_limit(tmp_path: Path) -> None:
    """``read_file`` asked Python for ``limit + 1`` bytes, which it allocates before reading: each
    trainer.json of 3 KiB took 16 MiB, each tokenizer 256 MiB, for the while."""
    import tracemalloc

    small = tmp_path / "small.json"
    small.write_bytes(b"{}" * 1000)
    tracemalloc.start()
    try:
        assert read_file(small, 256 << 20) == b"{}" * 1000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
