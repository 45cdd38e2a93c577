"""Inference latency, side by side in one process: eager, torch.compile variants, deepseek.optimize.

Every variant sees the same model and the same rotating inputs. After warm-up, rounds run the
variants in turn (so a noisy neighbour hurts all of them alike) and each variant's median,
p10 and p90 over ``runs`` calls are reported with its max relative error against eager.

Modes: ``forward`` (logits for ``batch x seq`` tokens: a prefill) and ``decode`` (one new token
per sequence after a ``seq``-token prompt, with the KV cache; the cache length is reset before
each call so every timed step is the same step, and the model's cache answers are held to their
contract once, on the prompt and one step before timing: :func:`run_latency`). Any other model
(a dict batch: images, recordings, several modalities) is timed on rows of its dataset's validation batches
(``batches``): ``model(**batch)`` in eval mode, compared on its ``logits``; a model whose output
has none is timed and compared through its ``serving`` prediction when it offers one, else on its
loss (:class:`BatchCall`). On
CUDA each variant's peak memory of one call is reported too.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from deepseek.bench.variants import check_only, variant_names
from deepseek.dtypes import torch_dtype
from deepseek.graph.passes import max_rel_error
from deepseek.models.cache_checks import fed_cached, fresh_cache
from deepseek.models.declared import Blame, token_input_limits
from deepseek.plugins.calls import blame_for, blamed_error


@dataclass
class Row:
    """One variant's result."""

    name: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    max_rel_error: float
    top1_agreement: float | None = None
    speedup_vs_eager: float | None = 1.0
    """Eager's median over this one's; None where eager was left out (it failed on its own)."""
    setup_s: float = 0.0
    note: str = ""
    peak_mib: float | None = None
    """CUDA: peak allocated memory during one call (weights included), MiB."""


@dataclass
class LatencyResult:
    """All rows plus what they were measured on."""

    rows: list[Row]
    info: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """Each variant left out for its own failure (:func:`_failure_rule`): ``ExcType: message``."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"info": self.info, "rows": [asdict(r) for r in self.rows]}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo, else platform)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What a computation on ``device`` runs on: CPU model and cores, the CPU kernels torch
    dispatches to, threads, versions, and the GPU. The same code and seed can give other numbers
    on another CPU (other kernels round differently), so a result keeps these beside it."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def device_info(device: torch.device) -> dict[str, Any]:
    """:func:`machine_info`, the load and the date, for the JSON record."""
    return {**machine_info(device), "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


class DecodeStep(nn.Module):
    """One cached decode step of a GPT after a fixed-length prompt (idempotent per call)."""

    def __init__(self, model: nn.Module, cache: Any, position: int) -> None:
        super().__init__()
        self.model = model
        self.cache = cache
        self.position = position

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits of ``idx`` (``(B, 1)``) at position ``self.position``: what is timed, unchecked
        (:meth:`checked` held the model's ``forward_cached`` to its contract once, before)."""
        return self._at_position(self.model.forward_cached, idx)

    def checked(self, idx: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` with ``forward_cached`` held to its contract
        (:func:`~deepseek.models.cache_checks.fed_cached`: it adds the one position fed to
        ``cache.length``), run once in the setup so that no timed call pays for the check."""
        return self._at_position(lambda ids, cache: fed_cached(self.model, ids, cache), idx)

    def _at_position(self, step: Callable[[torch.Tensor, Any], torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        self.cache.length = self.position
        out = step(idx, self.cache)
        self.cache.length = self.position
        return out


class BatchCall(nn.Module):
    """``model(**batch)`` as a module of the batch's tensors in a fixed order (what
    ``torch.compile`` and ``deepseek.optimize`` take), returning the batch's prediction, on which
    the variants are compared: the output's ``logits`` when the model gives a mapping with them;
    else, for a model with capability ``serving``, ``serving_forward(serving_inputs(batch))``
    (what ``deepseek export`` deploys, the labels unread), which is then what is timed; else the
    loss. ``example``: one batch, on the model's device, that decides between the first two."""

    def __init__(self, model: nn.Module, spec: Any, example: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.model = model
        self.spec = spec
        self.serving = False
        from deepseek.models.capabilities import model_capabilities

        if "serving" in model_capabilities(model):
            with torch.no_grad():
                out = model(**pytree.tree_unflatten(list(example), spec))
            self.serving = not (isinstance(out, dict) and "logits" in out)

    def forward(self, *leaves: torch.Tensor) -> torch.Tensor:
        batch = pytree.tree_unflatten(list(leaves), self.spec)
        if self.serving:
            return self.model.serving_forward(self.model.serving_inputs(batch))  # type: ignore[operator]
        out = self.model(**batch)
        if isinstance(out, dict):
            return out["logits"] if "logits" in out else out["loss"]
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_variants(
    target: nn.Module,
    example: tuple[torch.Tensor, ...],
    device: torch.device,
    optimize_kwargs: dict[str, Any],
    reduced: bool = False,
) -> list[tuple[str, Callable[[], Callable[..., Any]], str]]:
    """``(name, builder, note)`` of each variant; builders compile on first use. ``reduced``
    adds deepseek.optimize's opt-in bf16 and int8 paths (their errors are against fp32 eager)."""

    def compiled(**kwargs: Any) -> Callable[[], Callable[..., Any]]:
        def make() -> Callable[..., Any]:
            torch._dynamo.reset()
            return torch.compile(target, **kwargs)

        return make

    def frozen() -> Callable[..., Any]:
        import torch._inductor.config as inductor_config

        torch._dynamo.reset()
        fn = torch.compile(target)

        def call(*args: Any) -> Any:
            # freezing is read from the global inductor config at (re)compile time.
            with inductor_config.patch(freezing=True):
                return fn(*args)

        return call

    def optimized(**extra: Any) -> Callable[[], Callable[..., Any]]:
        def make() -> Callable[..., Any]:
            import deepseek

            return deepseek.optimize(target, example, **{**optimize_kwargs, **extra})

        return make

    def static() -> Callable[..., Any]:
        assert isinstance(target, DecodeStep)  # named only for a decode step (variant_names)
        return static_step(target, device.type == "cuda")

    makers: dict[str, tuple[Callable[[], Callable[..., Any]], str]] = {
        "eager": (lambda: target, "plain PyTorch, torch.no_grad()"),
        "torch.compile": (compiled(), "default mode"),
        "torch.compile+freezing": (frozen, "inductor freezing=True"),
        "torch.compile reduce-overhead": (compiled(mode="reduce-overhead"), "CUDA graphs"),
        "deepseek.optimize": (optimized(), "auto: verified fastest pipeline"),
        "deepseek static-cache": (static, "static KV cache, inductor step + argmax"),
        "deepseek static-cache graph": (static, "static KV cache, inductor step + argmax in one CUDA graph"),
        "deepseek.optimize bf16": (optimized(precision="bf16"), "opt-in bf16"),
        "deepseek.optimize int8": (optimized(precision="int8"), "opt-in int8 dynamic"),
    }
    return [(name, *makers[name]) for name in variant_names(device.type, isinstance(target, DecodeStep), reduced)]


def static_step(step: DecodeStep, graphs: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``step`` through a :class:`~deepseek.models.static_decoding.StaticDecoder` holding a copy
    of its cache: per call the token is copied into the decoder's input buffer and the device
    position set (two small copies outside the graph), then one graph replay (or, without
    graphs, the compiled step); returns the logits ``(B, 1, V)``."""
    from deepseek.models.static_decoding import StaticDecoder

    batch = step.cache.keys[0].size(0)
    decoder = StaticDecoder(step.model, batch, step.position + 1, temperature=0.0, top_k=None, graphs=graphs,
                            compile_step=True)
    for dst, src in zip(decoder.cache.keys + decoder.cache.values, step.cache.keys + step.cache.values, strict=True):
        dst.copy_(src)  # after the capture's warm-up steps, which wrote into the cache
    return lambda idx: decoder.step_at(idx, step.position).unsqueeze(1)


def _failure_rule(calls: Blame, call: str, say: Callable[[str], None],
                  reasons: dict[str, str]) -> Callable[[str, Exception], None]:
    """The one rule for a variant that raised, while it is built and warmed up or while it is
    compared and timed: ``failed(name, exc)`` raises what the model's block ``calls(call)``
    blames (:func:`~deepseek.plugins.calls.blamed_error`: the plugin model's code raised it, in
    any variant: its one ``PluginError`` line, exit 1); anything else is that variant's own failure
    (a compiler that cannot take the model, a pass, memory), reported with ``say``, kept in
    ``reasons`` (:attr:`LatencyResult.failed`) and the variant left out of the results."""

    def failed(name: str, exc: Exception) -> None:
        blamed = blamed_error(calls, call, exc)
        if blamed is not None:
            raise blamed
        reasons[name] = f"{type(exc).__name__}: {exc}"
        say(f"{name} failed: {reasons[name]}")

    return failed


def run_latency(
    model: nn.Module,
    *,
    batch: int = 1,
    seq: int = 128,
    device: str | torch.device = "cpu",
    dtype: str = "float32",
    mode: str = "forward",
    runs: int = 20,
    warmup: int = 3,
    rotate: int = 4,
    optimize_kwargs: dict[str, Any] | None = None,
    only: list[str] | None = None,
    reduced: bool = False,
    progress: Callable[[str], None] | None = None,
    batches: list[Any] | None = None,
    calls: Blame | None = None,
) -> LatencyResult:
    """Measure ``model`` under every variant; see the module docstring. ``batches``: dict batches
    of ``batch`` rows to time ``model(**batch)`` on (instead of token ids). ``calls``: the model's
    block (``model_calls``, :func:`~deepseek.plugins.calls.model_blame`; ``None``: nothing blamed)
    where its declarations and, in ``decode`` mode, its cache's answers are read: ``new_cache`` and
    ``forward_cached`` held to their contract (:mod:`~deepseek.models.cache_checks`) on the
    prompt's prefill and on one decode step before anything is timed, so a broken model's
    ``cache.length`` is its one line, not a timing; and the block that judges what every call of
    it raises (the references; each variant's build, warm-up and timed calls: :func:`_failure_rule`;
    ``forward``, ``forward_cached`` in ``decode`` mode), so what its code raises there is its one
    line too, not an internal error nor a variant's failure."""
    dev = torch.device(device)
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    model = model.to(dev, torch_dtype(dtype)).eval()
    block = calls or blame_for(None, None)
    vocab = token_input_limits(model, calls=calls)[0]
    gen = torch.Generator().manual_seed(0)
    inputs: list[tuple[torch.Tensor, ...]]
    if batches is not None:
        spec = pytree.tree_flatten(batches[0])[1]
        inputs = [tuple(t.to(dev, torch_dtype(dtype)) if t.is_floating_point() else t.to(dev)
                        for t in pytree.tree_flatten(b)[0]) for b in batches]
        with block("forward"):  # a serving model's forward decides what is compared
            target: nn.Module = BatchCall(model, spec, inputs[0])
    elif mode == "decode":
        with block("new_cache"):
            cache = fresh_cache(model, batch, seq + 1)
        prompt = torch.randint(0, vocab, (batch, seq), generator=gen).to(dev)
        step = DecodeStep(model, cache, seq)
        inputs = [(torch.randint(0, vocab, (batch, 1), generator=gen).to(dev),) for _ in range(rotate)]
        with torch.no_grad(), block("forward_cached"):
            fed_cached(model, prompt, cache)
            step.checked(*inputs[0])  # the one checked step; the timed ones (forward) are not
        target = step
    else:
        target = model
        inputs = [(torch.randint(0, vocab, (batch, seq), generator=gen).to(dev),) for _ in range(rotate)]
    say = progress or (lambda _msg: None)
    called = "forward_cached" if isinstance(target, DecodeStep) else "forward"  # the model's calls timed
    with torch.no_grad(), block(called):
        references = [target(*x).float().clone() for x in inputs]
    variants = build_variants(target, inputs[0], dev, dict(optimize_kwargs or {}), reduced)
    check_only(only, dev.type, mode, isinstance(target, DecodeStep), reduced)
    reasons: dict[str, str] = {}
    failed = _failure_rule(block, called, say, reasons)
    built: dict[str, tuple[Callable[..., Any], float, str]] = {}  # a variant that fails later is taken out
    for name, make, note in variants:
        if only and name not in only and name != "eager":
            continue
        say(f"preparing {name}")
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = make()
                with torch.no_grad():
                    for x in inputs[: max(1, warmup)]:
                        fn(*x)
        except Exception as exc:  # noqa: BLE001 - the model's bug is raised, a variant's own failure reported
            failed(name, exc)
            continue
        _sync(dev)
        if name.startswith("deepseek.optimize"):
            plan = fn.plan  # type: ignore[attr-defined]
            note = f"{' -> '.join(plan.pipeline)}{' (cached decision)' if plan.cache_hit else ''}"
        built[name] = (fn, time.perf_counter() - start, note)
    peaks: dict[str, float] = {}
    errors: dict[str, float] = {name: 0.0 for name in built}
    agree: dict[str, list[float]] = {name: [] for name in built}
    times: dict[str, list[float]] = {name: [] for name in built}
    with torch.no_grad():
        for name, (fn, *_) in list(built.items()):
            try:
                if dev.type == "cuda":  # one call per variant, after its warm-up
                    torch.cuda.synchronize(dev)
                    torch.cuda.reset_peak_memory_stats(dev)
                    fn(*inputs[0])
                    torch.cuda.synchronize(dev)
                    peaks[name] = torch.cuda.max_memory_allocated(dev) / 2**20
                for x, ref in zip(inputs, references, strict=True):
                    out = fn(*x).float()
                    errors[name] = max(errors[name], max_rel_error(out, ref))
                    agree[name].append(float((out.argmax(-1) == ref.argmax(-1)).float().mean()))
            except Exception as exc:  # noqa: BLE001 - as in the warm-up
                failed(name, exc)
                del built[name]
        say(f"timing {len(built)} variants x {runs} runs")
        for i in range(runs):
            x = inputs[i % len(inputs)]
            for name, (fn, *_) in list(built.items()):
                _sync(dev)
                start = time.perf_counter()
                try:  # no cost in the timed call unless it raises
                    fn(*x)
                except Exception as exc:  # noqa: BLE001 - as in the warm-up
                    failed(name, exc)
                    del built[name]
                    continue
                _sync(dev)
                times[name].append((time.perf_counter() - start) * 1e3)
    rows = []
    for name, (_fn, setup, note) in built.items():
        t = sorted(times[name])
        q = statistics.quantiles(t, n=10) if len(t) >= 2 else [t[0]] * 9
        top1 = round(statistics.fmean(agree[name]), 4) if agree[name] else None
        rows.append(Row(name, statistics.median(t), q[0], q[-1], errors[name], top1, setup_s=round(setup, 1), note=note,
                        peak_mib=round(peaks[name], 1) if name in peaks else None))
    eager = next((r.median_ms for r in rows if r.name == "eager"), None)
    for r in rows:
        r.speedup_vs_eager = round(eager / r.median_ms, 3) if eager else None
    info = device_info(dev)
    info["load_avg_1m"] = load_start
    info.update(batch=batch, seq=seq, mode=mode, dtype=dtype, runs=runs, warmup=warmup, rotating_inputs=rotate,
                load_avg_1m_end=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    return LatencyResult(rows, info, reasons)
