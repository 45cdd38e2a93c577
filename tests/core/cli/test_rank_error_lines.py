"""What one rank of a distributed job prints when the error it ends with is another rank's: a
:class:`~deepseek.errors.RankError` (a bug in model code on the rank that raised it, re-raised on
the others, as pipeline evaluation and the metric-name agreement do) is an internal error named by
the other rank's class, and a collective that broke because another rank died is this rank's
"lost its connection" line, whatever component's code it ran under (FSDP gathers weights inside a
model's ``forward``): the launcher's line names the rank that failed."""

from __future__ import annotations

import click
import pytest

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.errors import RankError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

GLOO_PEER_GONE = "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:538] Read error [127.0.0.1]:4993: Connection reset by peer"


@click.command("nb-ranks")
@click.option("--fail", type=click.Choice(["rank", "peer"]))
def ranks(fail: str) -> None:
    """Raise what a rank of a job raises when another rank failed."""
    if fail == "rank":
        raise RankError("index 9 is out of bounds for dimension 0 with size 4", "IndexError")
    raise RuntimeError(GLOO_PEER_GONE)


class Ranks:
    @hookimpl
    def deepseek_register_commands(self, register):  # noqa: ANN001, ANN201
        register("nb-ranks", ranks)


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Ranks(), dist="deepseek-ranks", version="0.1").status == "ok"
    with pytest.raises(SystemExit) as info:
        main(list(args), host=host)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_another_ranks_bug_is_an_internal_error_named_by_its_class(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_main(capsys, "nb-ranks", "--fail", "rank")
    assert (code, err) == (1, ["internal error: IndexError: index 9 is out of bounds for dimension 0 with size 4 "
                               "(run with --debug for the traceback)"])


def test_a_lost_peer_is_this_ranks_line_not_the_components_bug(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code, err = run_main(capsys, "nb-ranks", "--fail", "peer")
    assert (code, err) == (1, [f"error: rank 0 lost its connection to another rank ({GLOO_PEER_GONE[-120:]}); "
                               "the launcher names the rank that failed"])
    # the same exception in one process is no peer's: a bug of the command's plugin, as before
    monkeypatch.setenv("WORLD_SIZE", "1")
    code, err = run_main(capsys, "nb-ranks", "--fail", "peer")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: command 'nb-ranks' (deepseek-ranks 0.1, registered by test_rank_error_lines): "
                             "its callback raised RuntimeError: ")
