"""``deepseek bench latency`` calls the model in its block wherever it runs it: the references
every variant is compared with and the timed loop (``forward``; ``forward_cached`` in decode
mode), so what a plugin model's code raises there is its one ``PluginError`` line naming the
model and its distribution, exit code 1 (was: outside any block, our internal error with the
model's traceback). One rule decides for a variant's warm-up and its timed calls alike
(``_failure_rule``): the model's bug is its line, in a compiled variant's warm-up too (was: that
variant "failed" and left out, exit 0); anything its block does not blame is that variant's own
failure, reported and left out, in the timed loop too (was: raised out of the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from deepseek import hookimpl
from deepseek.cli.main import main
from deepseek.config.components import NoOptions
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import PLUGIN_BUG
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

pytestmark = pytest.mark.usefixtures("one_thread")


class Flaky(TrainableModel):
    """A bigram model on byte tokens whose ``RAISE_AT``-th call raises (a bug in its code)."""

    Options = NoOptions
    RAISE_AT: ClassVar[int] = 0
    ERROR: ClassVar[type[Exception]] = RuntimeError

    def __init__(self, options: Any = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, 8)
        self.head = nn.Linear(8, 256)
        self.calls = 0

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        if self.calls == type(self).RAISE_AT:
            raise type(self).ERROR(f"call {self.calls} of the model")
        return self.head(self.embed(input_ids))


class Plugin:
    @hookimpl
    def deepseek_register_models(self, register: Any) -> None:
        register("acme.flaky", Flaky)


# 4 rotating inputs: calls 1-4 are the references, 5 eager's warm-up, 6-9 its error check, 10 on timed;
# with --only torch.compile, 6 is the compiled variant's warm-up (dynamo runs the frame that raises)
@pytest.mark.parametrize(("raise_at", "variant"), [(1, "eager"), (10, "eager"), (6, "torch.compile")])
def test_a_plugin_models_bug_while_bench_latency_times_it_is_its_line(capsys: pytest.CaptureFixture[str],
                                                                      raise_at: int, variant: str) -> None:
    Flaky.RAISE_AT = raise_at
    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1").status == "ok"
    try:
        with pytest.raises(SystemExit) as exit_:
            main(["bench", "latency", "--model", "acme.flaky", "--seq", "8", "--runs", "20", "--warmup", "1",
                  "--only", variant], host=host)
    finally:
        Flaky.RAISE_AT = 0
    err = capsys.readouterr().err
    assert exit_.value.code == 1, err
    label = f"model 'acme.flaky' (deepseek-acme 0.1, registered by {__name__})"
    assert f"error: {label}: forward raised RuntimeError: call {raise_at} of the model; {PLUGIN_BUG}" in err
    assert "Traceback" not in err and "internal error" not in err


def test_a_variants_own_failure_while_timed_is_reported_and_left_out() -> None:
    """What the model's block does not blame (here: no plugin, ``calls=None``) fails that variant
    only, in the timed loop as in the warm-up: one line, no row, the others timed."""
    from deepseek.bench.latency import run_latency

    said: list[str] = []
    Flaky.RAISE_AT = 10  # eager's first timed call
    try:
        result = run_latency(Flaky(), batch=1, seq=8, runs=3, warmup=1, only=["eager"], progress=said.append)
    finally:
        Flaky.RAISE_AT = 0
    assert "eager failed: RuntimeError: call 10 of the model" in said, said
    assert result.rows == []
    assert result.failed == {"eager": "RuntimeError: call 10 of the model"}


def test_a_variant_of_the_baseline_that_fails_on_its_own_now_is_a_regression(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--against``: a variant timed in the saved result that now fails on its own (here a
    ``DeepseekError`` the model raises in its timed calls, which its block does not blame) was left
    out and the guard compared nothing: "no variant in common ... run the same variants", exit 2
    (with another variant timed: exit 0). It is a regression, exit 1, the table saying why."""
    from deepseek.errors import DeepseekError

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-acme", version="0.1").status == "ok"
    args = ["bench", "latency", "--model", "acme.flaky", "--seq", "8", "--runs", "20", "--warmup", "1", "--only", "eager"]
    saved = tmp_path / "saved.json"
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--json", str(saved)], host=host)
    assert exit_.value.code == 0 and saved.is_file()
    capsys.readouterr()
    Flaky.RAISE_AT, Flaky.ERROR = 10, DeepseekError  # eager's first timed call
    try:
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--against", str(saved)], host=host)
    finally:
        Flaky.RAISE_AT, Flaky.ERROR = 0, RuntimeError
    out, err = capsys.readouterr()
    assert exit_.value.code == 1 and "eager failed: DeepseekError: call 10 of the model" in err.splitlines(), err
    assert err.strip().splitlines()[-1] == f"regression: eager failed against {saved} (allowed 10%)"
    assert "REGRESSION: failed (DeepseekError: call 10 of the model)" in " ".join(out.split())


def test_with_eager_left_out_no_variant_claims_a_speedup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager failed on its own while timed (left out) and another variant was timed: that
    variant's speedup vs eager was 1.0, as if it were as fast as eager; it is none (the table: -)."""
    import copy
    import io

    from rich.console import Console

    from deepseek.bench import latency
    from deepseek.cli.bench_cmd import _table

    def own_copy(target: nn.Module) -> Any:  # a variant calling a copy of the model, which never raises
        twin = copy.deepcopy(target)
        twin.calls = -10**6
        return twin

    monkeypatch.setattr(latency, "build_variants", lambda target, *_: [
        ("eager", lambda: target, "plain"), ("acme copy", lambda: own_copy(target), "a copy")])
    Flaky.RAISE_AT = 10  # eager's first timed call
    try:
        result = latency.run_latency(Flaky(), batch=1, seq=8, runs=3, warmup=1)
    finally:
        Flaky.RAISE_AT = 0
    assert result.failed == {"eager": "RuntimeError: call 10 of the model"}
    assert [(r.name, r.speedup_vs_eager) for r in result.rows] == [("acme copy", None)]
    result.info["model"] = "acme.flaky"
    shown = Console(file=io.StringIO(), width=200)
    shown.print(_table(result))
    (row,) = [line for line in shown.file.getvalue().splitlines() if "acme copy" in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")][3] == "-"
