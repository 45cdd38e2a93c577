"""``cache.length`` held to the ``cached_decoding`` contract (docs/plugins.md section 10) where
core drives cached decoding in one process (``generate_cached``, eager and on a static cache;
``bench latency --mode decode``, on its prompt and one step before timing): a
``forward_cached`` adds the positions it was fed (on a static cache's cursor, to its device
position), a ``new_cache`` starts at 0. A model breaking it
(was: no word, and wrong tokens: a length left unchanged is never rebuilt at the window, so the
cache overruns it or the model attends at the wrong positions) is its one-line PluginError naming
the model and its distribution in its ``model_calls`` block, as ``deepseek generate`` runs it, and
the BrokenAnswer itself where nothing is blamed (core's own model, a script's). The pipeline's
stages: ``tests/pro/test_pipeline_metric_rules.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from _small_gpt import small_gpt

from deepseek import hookimpl
from deepseek.bench.latency import run_latency
from deepseek.cli.main import main
from deepseek.config.components import NoOptions
from deepseek.errors import PluginError
from deepseek.models.decoding import generate_cached
from deepseek.models.gpt import GPT
from deepseek.models.layers import KVCursor
from deepseek.models.protocol import TrainableModel
from deepseek.models.static_decoding import StaticDecoders
from deepseek.plugins.calls import PLUGIN_BUG, BrokenAnswer, blame_for, code_package
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings

pytestmark = pytest.mark.usefixtures("one_thread")

LABEL = "model 'acme.lm' (deepseek-acme 0.1, registered by acme.plugin)"


class MovesLength(TrainableModel):
    """A plugin's model decoding over a GPT's layers, which then sets ``cache.length`` to
    ``moved(before, fed)`` (the honest answer: ``before + fed``); its new cache starts at ``start``.
    It declares ``static_decoding``, its steps on a static cache the GPT's own."""

    static_decoding = True

    def __init__(self, inner: GPT, moved: Callable[[int, int], Any], start: int = 0) -> None:
        super().__init__()
        self.inner, self.moved, self.start = inner, moved, start

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.inner(input_ids, targets)

    def new_cache(self, batch: int, max_len: int) -> Any:
        cache = self.inner.new_cache(batch, max_len)
        cache.length = self.start
        return cache

    def forward_cached(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        if isinstance(cache, KVCursor):  # a static cache's step: the position on the device, advanced as the GPT does
            return self.inner.forward_cached(x, cache)
        before = cache.length
        out = self.inner.forward_cached(x, cache)
        cache.length = self.moved(before, x.size(1))
        return out

    def decode_window(self) -> int:
        return self.inner.decode_window()

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, on_token=None,
                 static=None, top_p=None, repetition_penalty=1.0):
        return generate_cached(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                               generator=generator, on_token=on_token, static=static, top_p=top_p,
                               repetition_penalty=repetition_penalty)


def _fed(fed: int, before: int, after: int) -> str:
    return (f"forward_cached was fed {fed} position(s) at cache.length {before} and left it at {after}, not "
            f"{before + fed}: it must add the positions it consumed to cache.length, which the decoding loop reads "
            "to rebuild the cache at the window (docs/plugins.md, 'Models')")


CASES = {  # the model's answer -> what is wrong with it, fed the 3-token prompt then 1 token a step
    "never-advances": (lambda before, fed: before, 0, _fed(3, 0, 0)),
    "stops-after-the-prompt": (lambda before, fed: before if before else fed, 0, _fed(1, 3, 3)),
    "jumps": (lambda before, fed: before + 2 * fed, 0, _fed(3, 0, 6)),
    "goes-backwards": (lambda before, fed: before - 1 if before else fed, 0, _fed(1, 3, 2)),
    "tensor-length": (lambda before, fed: torch.tensor(before + fed), 0,
                      "forward_cached gave a KVCache whose length is a Tensor: a cache must hold an int length, the "
                      "positions it holds (docs/plugins.md, 'Models')"),
    "new-cache-not-empty": (lambda before, fed: before + fed, 5,
                            "new_cache(1, 16) gave a cache of length 5; a new cache holds no positions, length 0 "
                            "(docs/plugins.md, 'Models')"),
}


ON_PREFILL = ("never-advances", "jumps", "tensor-length")
"""The cases a static cache finds: it starts at 0 itself, and only its prefill (host-side length)
reads ``cache.length``; its steps move a position on the device, read by no host."""


@pytest.mark.parametrize(("case", "static"), [*((case, False) for case in CASES), *((case, True) for case in ON_PREFILL)],
                         ids=[*(f"{case}-eager" for case in CASES), *(f"{case}-static" for case in ON_PREFILL)])
def test_a_cache_length_against_the_contract_is_the_models_bug(case: str, static: bool) -> None:
    moved, start, what = CASES[case]
    model = MovesLength(small_gpt(window=16, vocab_size=256), moved, start)
    idx = torch.tensor([[1, 2, 3]])
    pool = StaticDecoders(graphs=False, compile_step=False) if static else None
    with pytest.raises(PluginError) as raised, blame_for(LABEL, code_package(model))("generate"):
        model.generate(idx, 4, temperature=0, static=pool)
    assert str(raised.value) == f"{LABEL}: {what}; {PLUGIN_BUG}"
    with pytest.raises(BrokenAnswer) as unblamed, blame_for(None, None)("generate"):
        model.generate(idx, 4, temperature=0, static=pool)
    assert str(unblamed.value) == what


def test_an_honest_length_decodes_the_gpts_tokens_through_window_rebuilds() -> None:
    """The same model advancing by what it was fed passes the check at every step, across the
    window's rebuilds (3 + 30 positions in 16), and draws the GPT's own tokens."""
    gpt = small_gpt(window=16, vocab_size=256)
    idx = torch.tensor([[1, 2, 3]])
    model = MovesLength(gpt, lambda before, fed: before + fed)
    with blame_for(LABEL, code_package(model))("generate"):
        assert torch.equal(model.generate(idx, 30, temperature=0), gpt.generate(idx, 30, temperature=0))


class CursorStuck(MovesLength):
    """Honest on a ``KVCache``; its steps on a static cache's ``KVCursor`` leave the device
    position where it was (``cache.advance`` forgotten: each step writes over the last one's keys)."""

    def forward_cached(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        if not isinstance(cache, KVCursor):
            return super().forward_cached(x, cache)
        position = cache.position.clone()
        out = self.inner.forward_cached(x, cache)
        cache.position.copy_(position)
        return out


def test_a_static_step_that_does_not_advance_the_cursor_is_the_models_bug() -> None:
    """On a static cache the steps move a position on the device, which no host reads per step
    (a CUDA graph replays them): it is read back where the tokens are (a rebuild, the end), one
    read per request, and a position the steps did not move is the model's line there (was: no
    word, every step's keys written over the last's)."""
    model = CursorStuck(small_gpt(window=16, vocab_size=256), lambda before, fed: before + fed)
    what = ("forward_cached on a static cache (KVCursor) left its position at 3 after 3 one-token step(s), not 6: "
            "it must call cache.advance(t) with the positions it consumed, as it adds them to a KVCache's length "
            "(docs/plugins.md, 'Models', static_decoding)")
    pool = StaticDecoders(graphs=False, compile_step=False)
    with pytest.raises(PluginError) as raised, blame_for(LABEL, code_package(model))("generate"):
        model.generate(torch.tensor([[1, 2, 3]]), 4, temperature=0, static=pool)
    assert str(raised.value) == f"{LABEL}: {what}; {PLUGIN_BUG}"
    honest = MovesLength(model.inner, lambda before, fed: before + fed)
    idx = torch.tensor([[1, 2, 3]])  # through the window's rebuilds (3 + 30 positions in 16), as eagerly
    assert torch.equal(honest.generate(idx, 30, temperature=0, static=pool), model.inner.generate(idx, 30, temperature=0))


BENCH_SEQ = {"never-advances": 3, "stops-after-the-prompt": 3, "goes-backwards": 3, "new-cache-not-empty": 15}
"""The cases ``bench latency --mode decode`` finds, with the prompt each one's line is about: 3
tokens (then the one checked step), or 15 for a new cache of the window's 16 positions."""


@pytest.mark.parametrize("case", BENCH_SEQ)
def test_bench_latency_of_a_cache_length_against_the_contract_is_the_models_bug(case: str) -> None:
    """``run_latency`` in decode mode holds ``new_cache`` and ``forward_cached`` to the contract
    on the prompt and on one step before timing (was: a model generate refuses was timed, no
    word): the plugin's line in its block, the BrokenAnswer itself given none; an honest model's
    step is timed and agrees with itself."""
    moved, start, what = CASES[case]
    model = MovesLength(small_gpt(window=16, vocab_size=256), moved, start)
    args = {"batch": 1, "seq": BENCH_SEQ[case], "mode": "decode", "runs": 2, "warmup": 1, "only": ["eager"]}
    with pytest.raises(PluginError) as raised:
        run_latency(model, **args, calls=blame_for(LABEL, code_package(model)))
    assert str(raised.value) == f"{LABEL}: {what}; {PLUGIN_BUG}"
    with pytest.raises(BrokenAnswer) as unblamed:
        run_latency(model, **args)
    assert str(unblamed.value) == what
    honest = MovesLength(model.inner, lambda before, fed: before + fed)
    (eager,) = run_latency(honest, **args, calls=blame_for(LABEL, code_package(honest))).rows
    assert eager.name == "eager" and eager.max_rel_error == 0.0 and eager.top1_agreement == 1.0


class StuckLM(MovesLength):
    """A registered plugin model whose ``forward_cached`` never advances ``cache.length``."""

    Options = NoOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(small_gpt(window=16, vocab_size=256), lambda before, fed: before)


def test_the_bench_latency_command_says_a_plugin_models_cache_length_is_its_bug(capsys: pytest.CaptureFixture[str]) -> None:
    """``deepseek bench latency --mode decode`` passes the model's block: its one line, exit code 1."""

    class Acme:
        @hookimpl
        def deepseek_register_models(self, register: Any) -> None:
            register("acme.stuck", StuckLM)

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Acme(), dist="deepseek-acme", version="0.1").status == "ok"
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "latency", "--model", "acme.stuck", "--mode", "decode", "--seq", "3", "--runs", "20",
              "--warmup", "1", "--only", "eager"], host=host)
    assert exit_.value.code == 1
    label = f"model 'acme.stuck' (deepseek-acme 0.1, registered by {__name__})"
    assert f"{label}: {_fed(3, 0, 0)}; {PLUGIN_BUG}" in capsys.readouterr().err
