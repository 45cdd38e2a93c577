"""deepseek.optimize end to end (without inductor, to stay fast): the verification fallback,
the on-disk decision cache, deferred optimization per input shape, reduced precision."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import fx, nn

import deepseek
from deepseek import optimize
from deepseek.errors import UsageError
from deepseek.graph.passes import GraphPass, max_rel_error
from deepseek.graph.plan import STATS, OptimizerWarning
from deepseek.graph.reduced_precision import cpu_supports_bf16
from deepseek.graph.spec import DEFAULT_GRAPH_PASSES


def tiny_gpt() -> nn.Module:
    torch.manual_seed(0)
    return deepseek.create_model("tiny", n_layers=2).eval()


def tokens(batch: int = 1, seq: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (batch, seq), generator=torch.Generator().manual_seed(seq))


class ScaleOutput(GraphPass):
    """Deliberately wrong: multiplies the output by 1.01."""

    name = "test.scale-output"
    description = "wrong on purpose"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule:
        out = next(n for n in gm.graph.nodes if n.op == "output")
        with gm.graph.inserting_before(out):
            scaled = gm.graph.call_function(torch.mul, (out.args[0], 1.01))
        out.args = (scaled,)
        gm.recompile()
        self.record("scaled the output")
        return gm


class Explodes(GraphPass):
    name = "test.explodes"
    description = "raises"

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> fx.GraphModule:
        raise RuntimeError("boom")


def test_wrong_and_broken_passes_are_dropped_with_a_warning_naming_them() -> None:
    model, x = tiny_gpt(), tokens()
    with pytest.warns(OptimizerWarning) as caught:
        om = optimize(model, x, passes=["drop-dropout", ScaleOutput(), Explodes(), "const-fold"])
    messages = [str(w.message) for w in caught]
    assert any("'test.scale-output' dropped" in m and "exceeds 0.0001" in m for m in messages)
    assert any("'test.explodes' dropped" in m and "RuntimeError" in m for m in messages)
    statuses = {r.name: r.status for r in om.plan.passes}
    assert statuses == {"drop-dropout": "applied", "test.scale-output": "dropped",
                        "test.explodes": "error", "const-fold": "applied"}
    with torch.no_grad():
        assert max_rel_error(om(x), model(x)) <= 1e-6
    assert om.plan.pipeline == ["drop-dropout", "const-fold", "fx"]


def test_only_wrong_passes_leaves_eager() -> None:
    model, x = tiny_gpt(), tokens()
    with pytest.warns(OptimizerWarning):
        om = optimize(model, x, passes=[ScaleOutput()])
    assert om.plan.stage == "eager"
    with torch.no_grad():
        assert torch.equal(om(x), model(x))


def test_auto_decision_is_cached_on_disk_and_reused(_private_cache: Path) -> None:
    model, x = tiny_gpt(), tokens()
    before = STATS["searches"]
    first = optimize(model, x, stages=["fx"], runs=2, warmup=1).plan
    assert STATS["searches"] == before + 1 and not first.cache_hit
    assert first.cache_path is not None and Path(first.cache_path).parent == _private_cache / "optimize"
    stored = json.loads(Path(first.cache_path).read_text())
    assert stored["stage"] == first.stage and stored["pipeline"] == first.pipeline
    # A fresh model of the same structure (other weights): the decision is reused, not re-searched.
    torch.manual_seed(1)
    again = deepseek.create_model("tiny", n_layers=2).eval()
    second = optimize(again, x, stages=["fx"], runs=2, warmup=1).plan
    assert STATS["searches"] == before + 1, "the second optimize must not search again"
    assert second.cache_hit and second.pipeline == first.pipeline
    assert second.max_rel_error <= 1e-4
    # Another shape is another key: searched.
    optimize(model, tokens(seq=24), stages=["fx"], runs=2, warmup=1)
    assert STATS["searches"] == before + 2


def test_corrupt_cache_entry_is_a_miss(_private_cache: Path) -> None:
    model, x = tiny_gpt(), tokens()
    path = Path(optimize(model, x, stages=["fx"], runs=1, warmup=0).plan.cache_path)  # type: ignore[arg-type]
    path.write_text("{not json")
    before = STATS["searches"]
    plan = optimize(model, x, stages=["fx"], runs=1, warmup=0).plan
    assert not plan.cache_hit and STATS["searches"] == before + 1
    assert json.loads(path.read_text())["stage"] == plan.stage  # rewritten whole


@pytest.mark.parametrize("edit", [
    {"candidates": None},
    {"candidates": [{"name": 1}]},
    {"candidates": [{"name": "fx", "status": "ok", "median_ms": "fast"}]},
    {"candidates": [{"name": "fx", "status": "ok", "median_ms": float("nan")}]},
    {"pipeline": "fx"},
    {"stage": ["fx"]},
], ids=["candidates null", "candidate without status", "median a string", "median NaN", "pipeline a string",
        "stage a list"])
def test_a_decision_edited_into_another_shape_is_a_miss(_private_cache: Path, edit: dict[str, Any]) -> None:
    """Fields of a cached decision that :func:`store` would not write are a miss, searched again
    (were internal errors: KeyError 'status', a format code error, a TypeError in the report)."""
    from deepseek.graph import cache as disk

    model, x = tiny_gpt(), tokens()
    path = Path(optimize(model, x, stages=["fx"], runs=1, warmup=0).plan.cache_path)  # type: ignore[arg-type]
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    assert disk.load(path.stem, path.parent) is None
    before = STATS["searches"]
    plan = optimize(model, x, stages=["fx"], runs=1, warmup=0).plan
    assert not plan.cache_hit and STATS["searches"] == before + 1
    assert disk.load(path.stem, path.parent) is not None  # rewritten whole


@pytest.mark.parametrize("kind", ["fifo", "2 GiB", "folder"])
def test_a_fifo_huge_file_or_folder_in_place_of_a_decision_is_a_miss(_private_cache: Path, kind: str) -> None:
    """A cache entry that is no small regular file: a FIFO blocked the read for good (no writer
    comes) and a 2 GiB file was read whole; now each is a miss, searched again, and the FIFO and
    the file are written over (a folder cannot be: nothing is stored)."""
    import os
    import signal
    import threading

    from deepseek.graph import cache as disk

    model, x = tiny_gpt(), tokens()
    path = Path(optimize(model, x, stages=["fx"], runs=1, warmup=0).plan.cache_path)  # type: ignore[arg-type]
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        with path.open("wb") as fh:
            fh.truncate(2 << 30)  # sparse: no disk used

    def stuck(*_: Any) -> None:
        pytest.fail(f"reading the {kind} cache entry blocked")  # not an OSError, which the reader catches

    # SIGALRM sent to this thread (an alarm may reach one of torch's threads, leaving open() blocked)
    before, handler = STATS["searches"], signal.signal(signal.SIGALRM, stuck)
    timer = threading.Timer(60, signal.pthread_kill, (threading.get_ident(), signal.SIGALRM))
    timer.start()
    try:
        assert disk.load(path.stem, path.parent) is None
        plan = optimize(model, x, stages=["fx"], runs=1, warmup=0).plan
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, handler)
    assert not plan.cache_hit and STATS["searches"] == before + 1
    if kind == "folder":
        assert path.is_dir() and plan.cache_path is None
    else:
        assert disk.load(path.stem, path.parent) is not None  # rewritten whole


def test_deferred_optimization_per_input_shape() -> None:
    model = tiny_gpt()
    om = optimize(model, passes=["drop-dropout", "const-fold"], max_shapes=2)
    assert om.plans == []
    a, b, c = tokens(seq=8), tokens(2, 12), tokens(seq=20)
    with torch.no_grad():
        for x in (a, b, a):
            assert max_rel_error(om(x), model(x)) <= 1e-6
        assert [p.signature for p in om.plans] == [repr((("T", (2, 12), "torch.int64", "cpu"),)),
                                                  repr((("T", (1, 8), "torch.int64", "cpu"),))]
        om(c)  # LRU: (2, 12) is dropped
    assert len(om.plans) == 2 and "(1, 20)" in om.plans[-1].signature and "(2, 12)" not in str(
        [p.signature for p in om.plans]
    )
    # const-fold specialized each graph to its shape: the position table has each shape's length.
    assert all("specialized" in " ".join(r.changes) for p in om.plans for r in p.passes if r.name == "const-fold")


def test_unknown_pass_or_precision_fails_before_any_work() -> None:
    model = tiny_gpt()
    with pytest.raises(UsageError, match="no-such-pass"):
        optimize(model, passes=["no-such-pass"])
    with pytest.raises(UsageError, match="precision"):
        optimize(model, precision="fp8")
    with pytest.raises(UsageError, match="unknown stage"):
        optimize(model, stages=["warp-drive"])


def test_optimized_model_is_inference_only() -> None:
    om = optimize(tiny_gpt(), passes="none")
    with pytest.raises(UsageError, match="inference-only"):
        om.train()


def test_int8_path_reports_its_accuracy() -> None:
    model, x = tiny_gpt(), tokens(2, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizerWarning)
        plan = optimize(model, x, passes=["drop-dropout"], precision="int8").plan
    report = next(r for r in plan.passes if r.name == "int8-dynamic")
    assert report.status == "applied" and "quantized 9 Linear" in report.changes[0]
    assert plan.tolerance == 0.1 and 0 < plan.max_rel_error <= 0.1
    assert plan.top1_agreement is not None and plan.top1_agreement >= 0.9


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
def test_bf16_path_reports_its_accuracy() -> None:
    model, x = tiny_gpt(), tokens(2, 32)
    om = optimize(model, x, passes=["drop-dropout"], precision="bf16")
    plan = om.plan
    assert plan.pipeline[-2:] == ["bf16", "fx"]
    assert plan.tolerance == 0.05 and 0 < plan.max_rel_error <= 0.05
    assert plan.top1_agreement is not None and plan.top1_agreement >= 0.9
    with torch.no_grad():
        out = om(x)
    assert out.dtype == torch.float32
    assert next(model.parameters()).dtype == torch.float32, "the user's model stays fp32"


class Counter(nn.Module):
    """Reads and updates a tensor held in plain Python state (like a KV cache)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.state = [torch.zeros(4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.state[0].add_(1.0)
        return self.lin(x) + self.state[0]


def test_models_with_python_held_state_are_not_frozen_into_a_graph() -> None:
    model, x = Counter().eval(), torch.randn(2, 4)
    with pytest.warns(OptimizerWarning, match="could not capture a graph"):
        om = optimize(model, x, stages=["fx", "onednn"], cache=False, runs=1, warmup=0)
    plan = om.plan
    assert plan.stage == "eager" and plan.capture.startswith("failed")
    assert {c["name"]: c["status"] for c in plan.candidates}["onednn"] == "skipped"
    before = model.state[0][0].item()
    with torch.no_grad():
        out = om(x)
    assert model.state[0][0].item() == before + 1, "the state update must still happen"
    torch.testing.assert_close(out, model.lin(x) + model.state[0])


class CountingNoop(GraphPass):
    """A plugin-style pass that records that it ran and changes nothing."""

    name = "test.counting"
    description = "counts calls"
    calls = 0

    def apply(self, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> None:
        CountingNoop.calls += 1
        return None


def test_extra_passes_join_the_auto_search_after_the_builtins() -> None:
    model, x = tiny_gpt(), tokens()
    plan = optimize(model, x, passes=["auto", CountingNoop()], stages=["fx"], runs=1, warmup=0).plan
    names = [r.name for r in plan.passes]
    assert names[:6] == list(DEFAULT_GRAPH_PASSES) and names[6] == "test.counting"
    assert CountingNoop.calls == 1 and plan.cache_path is None, "unnamed passes make the decision uncacheable"


def test_decision_key_is_stable_across_processes() -> None:
    import subprocess
    import sys

    from deepseek.graph.cache import decision_key

    script = (
        "import torch, deepseek\n"
        "from deepseek.graph.cache import decision_key\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "m = deepseek.create_model('tiny', n_layers=2)\n"
        "print(decision_key(m, ('sig',), 'cpu', {'x': 1}))\n"
    )
    outs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    here = decision_key(deepseek.create_model("tiny", n_layers=2), ("sig",), "cpu", {"x": 1})
    assert outs == {here}


class ShapeBranch(nn.Module):
    """Python control flow on a shape: symbolic tracing fails, torch.export captures it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(16, 32), nn.Linear(32, 16), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 1:
            x = x * 2
        h = self.b(self.a(x))  # consecutive Linear layers: fuse-linear's pattern
        return self.c(h).relu() + h


def test_models_symbolic_tracing_cannot_follow_get_the_aten_form() -> None:
    torch.manual_seed(0)
    model, x = ShapeBranch().eval(), torch.randn(4, 16)
    plan = optimize(model, x, passes=["fuse-linear"], precision="int8", cache=False).plan
    assert plan.capture == "torch.export"
    statuses = {r.name: (r.status, r.changes) for r in plan.passes}
    assert statuses["fuse-linear"] == ("applied", ["linear (16->32) + linear_1 (32->16) -> fused_linear_linear_1 (16->16)"])
    assert statuses["int8-dynamic"][0] == "applied"
    assert "quantized 2 Linear layer(s)" in statuses["int8-dynamic"][1][0]


class ShapeBranchWithIndex(ShapeBranch):
    """ShapeBranch reading a non-persistent buffer, as timm's Swin reads its relative position
    index and attention mask (the multimodal classifier's vision encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("order", torch.arange(16).flip(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x[:, self.order])


def test_non_persistent_buffers_are_module_state_not_python_state() -> None:
    torch.manual_seed(0)
    model, x = ShapeBranchWithIndex().eval(), torch.randn(4, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizerWarning)  # no "could not capture a graph"
        om = optimize(model, x, passes=["fuse-linear"], stages=["fx"], cache=False, runs=1, warmup=0)
    assert om.plan.capture == "torch.export"
    assert {r.name: r.status for r in om.plan.passes}["fuse-linear"] == "applied"
    with torch.no_grad():
        torch.testing.assert_close(om(x), model(x))


def test_deepseek_optimize_is_the_function_and_has_one_import_path() -> None:
    import importlib.util

    from deepseek.graph.optimized import optimize as defined

    assert deepseek.optimize is defined and optimize is defined
    assert importlib.util.find_spec("deepseek.optimize") is None, "no module shadows the function"


def test_the_inductor_stage_holds_back_torchs_cuda_home_note(caplog: pytest.LogCaptureFixture) -> None:
    """On a machine without CUDA, inductor's import of torch.utils.cpp_extension logs 'No CUDA
    runtime is found, using CUDA_HOME=...' at the first optimize; the stage holds that line back
    (and only that one)."""
    import logging

    from deepseek.graph.inductor import InductorStage

    gm = fx.symbolic_trace(nn.Sequential(nn.Linear(4, 4)))
    x = torch.randn(2, 4)
    out = InductorStage().apply(gm, [x])
    assert out is not None and torch.allclose(out(x), gm(x), atol=1e-6)
    log = logging.getLogger("torch.utils.cpp_extension")
    with caplog.at_level(logging.WARNING, logger="torch.utils.cpp_extension"):
        log.warning("No CUDA runtime is found, using CUDA_HOME='/usr/local'")
        log.warning("another note")
    assert [r.getMessage() for r in caplog.records if r.name == log.name] == ["another note"]


class _Keyworded(nn.Module):
    """A model called as the trainer calls one, with keyword inputs (``model(**batch)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 2)

    def forward(self, *, features: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.proj(features), label)


@pytest.mark.parametrize("inputs", [torch.randn(3, 4), {"features": torch.randn(3, 4), "label": torch.zeros(3).long()}])
def test_example_inputs_the_model_cannot_take_are_one_line(inputs: Any) -> None:
    """Was the model's own TypeError, raw, from inside the search."""
    with pytest.raises(UsageError, match=r"^optimize\(\): _Keyworded\(\*example_inputs\) raised TypeError: .*; pass "
                                         r"the positional inputs its forward takes .*keyword inputs \(model\(\*\*batch\)\) "
                                         r"cannot be optimized") as info:
        optimize(_Keyworded(), inputs, cache=False)
    assert "\n" not in str(info.value)
