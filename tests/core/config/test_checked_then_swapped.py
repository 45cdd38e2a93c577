"""A user's file checked, then read (a config TOML, a --prompts file): the path can be replaced
between the check and the read (a FIFO put there blocked the command, a 2 GiB file was read
whole). The read itself takes only a regular file of bounded size, so a swap after any check is
refused or read as the file it was, never waited on."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepseek.config.toml_files import read_toml
from deepseek.errors import ConfigError, UsageError
from deepseek.training.serving import MAX_PROMPTS_BYTES, read_prompts


def _read_or_refuse(fn: Callable[[], Any]) -> Callable[[], Any]:
    def call() -> Any:
        try:
            return fn()
        except (ConfigError, UsageError) as exc:
            return str(exc)
    return call


def test_a_config_swapped_for_a_fifo_after_its_check_is_not_waited_on(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nmax_steps = 3\n")
    fifo_after_is_file(cfg)
    got = past_fifo(cfg, _read_or_refuse(lambda: read_toml(cfg)))
    assert got == {"train": {"max_steps": 3}} or got == (
        f"{cfg}: not a regular file (a device, FIFO or socket); give a TOML config file")
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert past_fifo(fifo, _read_or_refuse(lambda: read_toml(fifo))) == (
        f"{fifo}: not a regular file (a device, FIFO or socket); give a TOML config file")


def test_a_prompts_file_swapped_for_a_fifo_or_too_large_is_refused_in_one_line(
        tmp_path: Path, fifo_after_is_file: Callable[[Path], None], past_fifo: Callable[..., Any]) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nworld\n")
    fifo_after_is_file(prompts)
    got = past_fifo(prompts, _read_or_refuse(lambda: read_prompts(prompts)))
    fifo_line = "is not a regular file (a device, FIFO or socket); pass a text file with one prompt per line"
    assert got in (["hello", "world"], f"--prompts: {prompts} {fifo_line}")
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    assert past_fifo(fifo, _read_or_refuse(lambda: read_prompts(fifo))) == f"--prompts: {fifo} {fifo_line}"
    big = tmp_path / "big.txt"
    with big.open("wb") as fh:  # sparse: a file larger than any prompts file, never read whole
        fh.truncate(MAX_PROMPTS_BYTES + 1)
    assert _read_or_refuse(lambda: read_prompts(big))() == (
        f"--prompts: {big} is larger than 64 MiB; pass a text file with one prompt per line")
