"""`deepseek generate --prompts FILE`: every line served, batched by token length, greedy
continuations equal to one prompt at a time, a tokens/s and time-to-first-token summary; bad
files and flags refused in one line with nothing written. (Under `deepseek launch` with `tp`:
tests/pro/test_tp.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hostile_cli import Hostile, invoke

from deepseek.plugins.host import PluginHost

PROMPTS = ["def f(x):", "hello", "import os", "hello world", "abc", "class A:"]
GREEDY = ["--temperature", "0", "--max-new-tokens", "12"]


def test_prompts_are_served_like_one_at_a_time(tmp_path: Path, trained_run: Path, core_host: PluginHost,
                                               one_thread: None) -> None:
    file = tmp_path / "prompts.txt"
    file.write_text("\n".join([PROMPTS[0], "", *PROMPTS[1:]]) + "\n", encoding="utf-8")  # blank lines skipped
    served = invoke(["generate", "--checkpoint", str(trained_run), "--prompts", str(file), "--batch-size", "2",
                     *GREEDY], core_host)
    assert served.code == 0, served.stderr
    rows = [json.loads(line) for line in served.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS
    for row in rows:
        one = invoke(["generate", "--checkpoint", str(trained_run), *GREEDY, row["prompt"]], core_host)
        assert one.stdout == row["prompt"] + row["text"] + "\n"
    # 9, 5, 9, 11, 3 and 8 bytes: "def f(x):" and "import os" share a batch, the others are alone
    summary = served.stderr.strip()
    match = re.fullmatch(r"served 6 prompts in 5 batches: 72 new tokens in [\d.]+ s \(([\d,.]+) tokens/s\), "
                         r"time to first token ([\d.]+) ms \(median over batches\)", summary)
    assert match, summary
    assert float(match.group(1).replace(",", "")) > 0 and float(match.group(2)) > 0


def test_num_samples_draws_several_samples_of_each_prompt(tmp_path: Path, trained_run: Path, core_host: PluginHost,
                                                         one_thread: None) -> None:
    """Sampled: different samples of one prompt, the same again with the same seed; greedy: each
    sample is the prompt's greedy continuation."""
    sampled = ["generate", "--checkpoint", str(trained_run), "--max-new-tokens", "16", "--temperature", "1.0",
               "--num-samples", "4", "def "]
    first, again = invoke(sampled, core_host), invoke(sampled, core_host)
    assert first.code == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["prompt"], r["sample"]) for r in rows] == [("def ", i) for i in range(4)]
    assert len({r["text"] for r in rows}) > 1 and again.stdout == first.stdout
    assert first.stderr.startswith("served 4 prompts in 1 batches")
    file = tmp_path / "prompts.txt"
    file.write_text("hello\nabc\n", encoding="utf-8")
    greedy = invoke(["generate", "--checkpoint", str(trained_run), "--prompts", str(file), "--num-samples", "2",
                     *GREEDY], core_host)
    assert greedy.code == 0, greedy.stderr
    rows = [json.loads(line) for line in greedy.stdout.splitlines()]
    assert [(r["prompt"], r["sample"]) for r in rows] == [("hello", 0), ("hello", 1), ("abc", 0), ("abc", 1)]
    for row in rows:
        one = invoke(["generate", "--checkpoint", str(trained_run), *GREEDY, row["prompt"]], core_host)
        assert one.stdout == row["prompt"] + row["text"] + "\n"


def test_a_jsonl_prompts_file_holds_prompts_with_line_breaks(tmp_path: Path, trained_run: Path,
                                                             core_host: PluginHost, one_thread: None) -> None:
    file = tmp_path / "prompts.jsonl"
    file.write_text('"def f(x):\\n    return"\n\n{"prompt": "abc"}\n', encoding="utf-8")
    served = invoke(["generate", "--checkpoint", str(trained_run), "--prompts", str(file), *GREEDY], core_host)
    assert served.code == 0, served.stderr
    rows = [json.loads(line) for line in served.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["def f(x):\n    return", "abc"]
    one = invoke(["generate", "--checkpoint", str(trained_run), *GREEDY, "def f(x):\n    return"], core_host)
    assert one.stdout == "def f(x):\n    return" + rows[0]["text"] + "\n"


@pytest.mark.parametrize(("content", "extra", "expect"), [
    (None, [], "does not exist"),
    (b"", [], "holds no prompt"),
    (b"\n  \n", [], "holds no prompt"),
    (b"\xff\xfe bad", [], "is not UTF-8 text"),
    (b"hi\n", ["a prompt"], "give a PROMPT or --prompts FILE, not both"),
    (b"hi\n", ["--batch-size", "0"], "--batch-size"),
    (b"hi\n", ["--num-samples", "0"], "--num-samples"),
])
def test_bad_prompt_files_are_one_line(content: bytes | None, extra: list[str], expect: str, hostile: Hostile,
                                       trained_run: Path) -> None:
    file = hostile.work.parent / "prompts.txt"
    if content is not None:
        file.write_bytes(content)
    hostile.refused("generate", "--checkpoint", str(trained_run), "--prompts", str(file), *extra, expect=[expect])


@pytest.mark.parametrize(("content", "expect"), [
    (b'{"prompt": 3}\n', "prompts.jsonl:1: not a prompt; a .jsonl prompts file holds one JSON string or"),
    (b'"ok"\n{bad\n', "prompts.jsonl:2: not JSON (Expecting property name enclosed in double quotes)"),
    (b"\n\n", "holds no prompt"),
])
def test_bad_jsonl_prompt_files_are_one_line(content: bytes, expect: str, hostile: Hostile, trained_run: Path) -> None:
    file = hostile.work.parent / "prompts.jsonl"
    file.write_bytes(content)
    hostile.refused("generate", "--checkpoint", str(trained_run), "--prompts", str(file), expect=[expect])


def test_a_prompts_file_that_is_a_device_or_fifo_is_refused_unread(hostile: Hostile, trained_run: Path) -> None:
    import os

    fifo = hostile.work.parent / "prompts.fifo"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):  # /dev/zero was read until the OOM killer; a FIFO blocked
        hostile.refused("generate", "--checkpoint", str(trained_run), "--prompts", path,
                        expect=["--prompts", "is not a regular file"])
