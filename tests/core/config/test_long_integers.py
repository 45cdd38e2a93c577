"""An integer literal of more digits than Python converts (4,300 by default) made ``json.loads``
and ``tomllib.loads`` raise a bare ``ValueError``, which no "malformed file" handler caught: an
"internal error" (exit 1) from ``deepseek train CONFIG``, ``deepseek config show`` and a
checkpoint's ``trainer.json`` read back (``eval``, a resume). Now it is a parse error like any
other malformed text, one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tomllib

from deepseek.errors import CheckpointError
from deepseek.parsing import TOO_LONG, loads_json, loads_toml
from deepseek.training.checkpoint import read_trainer_state

LIMIT = sys.get_int_max_str_digits()
LONG = "1" + "0" * LIMIT  # one digit too many


def test_too_long_an_integer_is_a_parse_error() -> None:
    with pytest.raises(json.JSONDecodeError) as caught:
        loads_json('{"step": ' + LONG + "}")
    assert str(caught.value) == TOO_LONG == f"holds an integer of more than {LIMIT:,} digits"
    with pytest.raises(tomllib.TOMLDecodeError, match=f"^{TOO_LONG}$"):
        loads_toml("x = -" + LONG)
    # Up to the limit, and long floats (inf past a float's range), parse as before.
    assert loads_json(LONG[:-1]) == 10 ** (LIMIT - 1) and loads_toml("x = 1e99999") == {"x": float("inf")}
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):  # other errors are json's own
        loads_json("[1,")
    # bytes that do not decode are json's UnicodeDecodeError (a ValueError), not a too long integer
    with pytest.raises(UnicodeDecodeError):
        loads_json(b'{"name": "\xff"}')


@pytest.mark.parametrize("command", [["train"], ["config", "show"]])
def test_a_config_with_too_long_an_integer_is_one_line(
        tmp_path: Path, deepseek_here: Callable[..., subprocess.CompletedProcess[str]], command: list[str]) -> None:
    (tmp_path / "big.toml").write_text(f"[train]\nmax_steps = {LONG}\n")
    out = deepseek_here(*command, "big.toml", cwd=tmp_path)
    assert (out.returncode, out.stderr.strip()) == (
        2, f"error: big.toml: not a config: it holds an integer of more than {LIMIT:,} digits (no setting takes "
           "one); check the path and the file, and give numbers a setting's range allows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.toml"]  # nothing written


def test_a_trainer_state_with_too_long_an_integer_is_refused_as_corrupt(tmp_path: Path) -> None:
    (tmp_path / "trainer.json").write_text('{"format": "deepseek-checkpoint", "format_version": 1, "step": '
                                           + LONG + "}")
    with pytest.raises(CheckpointError, match=r"trainer\.json: trainer state is corrupt or truncated \(holds an "
                                              f"integer of more than {LIMIT:,} digits\\); use an earlier checkpoint"):
        read_trainer_state(tmp_path)
