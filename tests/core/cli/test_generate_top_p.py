"""`deepseek generate --top-p`: a tiny nucleus decodes the greedy text, a value outside (0, 1] is
one line with exit 2 (the sampling itself: tests/core/models/test_top_p.py)."""

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
