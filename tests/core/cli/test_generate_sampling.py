"""`deepseek generate --top-p`, `--repetition-penalty` and `--stop`: a tiny nucleus decodes the greedy text and a value
outside (0, 1] is one line with exit 2; `--stop` prints the greedy text cut before the stop, and
an empty one is one line; `--repetition-penalty 1` prints today's text, a penalty changes the
greedy text and a value <= 0 is one line with exit 2 (the sampling itself:
tests/core/models/test_top_p.py, test_repetition_penalty.py and test_stop_strings.py)."""

from __future__ import annotations

from pathlib import Path

from hostile_cli import Hostile, invoke

from deepseek.plugins.host import PluginHost


def test_cli_top_p(hostile: Hostile, trained_run: Path, core_host: PluginHost) -> None:
    base = ["generate", "--checkpoint", str(trained_run), "--max-new-tokens", "8", "--device", "cpu"]
    greedy = invoke([*base, "--temperature", "0", "def "], core_host)
    tiny = invoke([*base, "--top-p", "1e-9", "def "], core_host)
    assert greedy.code == tiny.code == 0, greedy.stderr + tiny.stderr
    assert tiny.stdout == greedy.stdout
    for bad in ("0", "1.5", "nan"):
        hostile.refused(*base, "--top-p", bad, "def ", expect=["--top-p"])


def test_cli_repetition_penalty(hostile: Hostile, trained_run: Path, core_host: PluginHost) -> None:
    base = ["generate", "--checkpoint", str(trained_run), "--max-new-tokens", "24", "--device", "cpu",
            "--temperature", "0"]
    plain = invoke([*base, "def "], core_host)
    one = invoke([*base, "--repetition-penalty", "1", "def "], core_host)
    strong = invoke([*base, "--repetition-penalty", "3", "def "], core_host)
    assert plain.code == one.code == strong.code == 0, plain.stderr + one.stderr + strong.stderr
    assert one.stdout == plain.stdout
    assert strong.stdout != plain.stdout
    for bad in ("0", "-1.5", "nan"):
        hostile.refused(*base, "--repetition-penalty", bad, "def ", expect=["--repetition-penalty"])


def test_cli_stop(hostile: Hostile, trained_run: Path, core_host: PluginHost) -> None:
    base = ["generate", "--checkpoint", str(trained_run), "--max-new-tokens", "24", "--device", "cpu",
            "--temperature", "0"]
    full = invoke([*base, "def "], core_host)
    assert full.code == 0, full.stderr
    text = full.stdout.removesuffix("\n")
    stop = text[6:8]
    cut = invoke([*base, "--stop", stop, "--stop", "\x01never", "def "], core_host)
    assert cut.code == 0, cut.stderr
    assert cut.stdout == "def " + text[4:][:text[4:].find(stop)] + "\n"
    hostile.refused(*base, "--stop", "", "def ", expect=["--stop: an empty stop string"])
