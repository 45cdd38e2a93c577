"""Words a plugin's pass writes (its error, what it changed) are printed by ``deepseek optimize``
in its plan table and its dropped-pass warnings, which rich read as markup: an error saying
``x[/]`` ended the command with a ``MarkupError`` after the optimization had run, and
``[bold]`` vanished from the line. ``bench latency``'s progress lines quote a variant's error the
same way."""

from __future__ import annotations

import io
from pathlib import Path

from hostile_cli import invoke

from deepseek import hookimpl
from deepseek.graph.passes import GraphPass
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


class Refuses(GraphPass):
    name = "acme.refuses"
    description = "raises with markup-like words"

    def apply(self, gm, example_inputs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no node [bold]x in tensor[/]")


class Acme:
    @hookimpl
    def deepseek_register_passes(self, register):  # type: ignore[no-untyped-def]
        register("acme.refuses", Refuses, description="raises")


def test_a_pass_error_is_printed_as_written(trained_run: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DEEPSEEK_CACHE_DIR", str(tmp_path / "cache"))
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Acme(), dist="acme-passes").status == "ok"
    out = invoke(["optimize", "--checkpoint", str(trained_run), "--passes", "acme.refuses"], host)
    assert out.code == 0, out.stderr
    printed = " ".join(out.stdout.split())
    assert "warning: optimizer: pass 'acme.refuses' dropped:" in printed
    assert printed.count("no node [bold]x in tensor[/]") == 2  # the plan table's row and the warning


def test_bench_progress_lines_are_printed_as_written() -> None:
    from rich.console import Console

    from deepseek.cli.bench_cmd import progress_printer

    stream = io.StringIO()
    progress_printer(Console(file=stream, width=200))("torch.compile failed: RuntimeError: [bold]x[/]")
    assert stream.getvalue() == "torch.compile failed: RuntimeError: [bold]x[/]\n"
