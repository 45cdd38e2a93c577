"""A third-party distribution's name, version and failure (its metadata and code, not ours) are
printed as written by ``deepseek plugins list`` and ``deepseek advise``'s table: rich read them as
markup, so ``x[/]`` failed the command with a MarkupError and ``a[bold]b`` lost its brackets."""

from __future__ import annotations

import io

from plugin_testing import DistFactory, host_for, run_cli

STRATEGY_PLUGIN = """
from deepseek import hookimpl

@hookimpl
def deepseek_register_strategies(register):
    register("mk.offload", "mk_never_imported:Offload", description="declares a free row",
             declares={"memory_rows": ["ddp+offload"]})
"""


def _flat(text: str) -> str:
    """The table's text with its borders and line wraps taken out."""
    return " ".join(text.replace("\u2502", " ").split())


def _dists(make_dist: DistFactory) -> None:
    make_dist("deepseek-mk[bold]x", {"mk_plugin": STRATEGY_PLUGIN})
    info = make_dist.root / "deepseek_mk[bold]x-0.1.0.dist-info" / "METADATA"
    info.write_text(info.read_text().replace("Version: 0.1.0", "Version: 0.1[/]"))
    make_dist("deepseek-mkbad", {"mkbad_plugin": "raise ImportError('x[/][red]y')\n"})


def test_plugins_list_prints_metadata_and_failures_as_written(make_dist: DistFactory) -> None:
    _dists(make_dist)
    proc = run_cli("plugins", "list", env=make_dist.env())
    assert proc.returncode == 0, proc.stderr
    flat = _flat(proc.stdout)
    assert "deepseek-mk[bold]x 0.1[/] third-party strategy: mk.offload ok" in flat
    assert "failed to import: ImportError: x[/][red]y;" in flat
    assert "\x1b" not in proc.stdout


def test_advise_table_prints_a_third_party_edition_as_written(make_dist: DistFactory) -> None:
    from rich.console import Console

    from deepseek.advise.report import AdviseInputs, advise, render

    _dists(make_dist)
    host = host_for("deepseek-mk[bold]x")
    assert host.records["deepseek-mk[bold]x"].status == "ok"
    report = advise(AdviseInputs(params=1e8, gpus=2, gpu_memory="80GiB", host_memory="512GiB"), host)
    row = next(e for e in report["estimates"] if e["key"] == "ddp+offload")
    assert (row["edition"], row["engine"]) == ("deepseek-mk[bold]x", "mk.offload")
    out = io.StringIO()
    render(report, Console(file=out, width=200))
    assert "deepseek-mk[bold]x: mk.offload" in out.getvalue()


def test_plugins_which_prints_a_description_with_an_escape_sequence_escaped(make_dist: DistFactory) -> None:
    """``plugins which`` prints the winner's description, module and target with click: an
    escape sequence in a plugin's description reached the terminal raw (registration collapses
    whitespace only)."""
    make_dist("deepseek-mkesc", {"mkesc_plugin": STRATEGY_PLUGIN.replace(
        'description="declares a free row"', 'description="red \\x1b[31malert"')})
    proc = run_cli("plugins", "which", "strategy", "mk.offload", env=make_dist.env())
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout
    assert "  description   $'red \\x1b[31malert'\n" in proc.stdout
