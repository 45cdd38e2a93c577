"""Serving a trained model split into pipeline stages: ``deepseek eval`` / ``generate
--strategy pipeline`` under ``deepseek launch -n N``.

Each rank keeps one stage of the model's ``split_stages(N)`` (so a model larger than one device's
memory is served by several); the other stages' weights are freed. :class:`PipelinedModel` is the
module those commands call on every rank:

- ``model(**batch)``: one forward through the stages (point-to-point sends of the hidden states,
  the strategy's :meth:`~deepseek_pro.strategies.pipeline.PipelineStrategy.evaluate`); every rank
  returns the loss.
- ``model.generate(...)`` (capability ``generation``): core's decoding loop (:func:`deepseek.models.decoding.decode`) with each
  stage caching the keys and values of its own blocks (``cached_decoding`` capability of the
  stages). Per token the hidden states travel stage to stage, the last stage's logits of the last
  position are broadcast to every rank, and every rank samples the same token (same seed, same
  logits), so each knows the next input without another message. Greedy decoding gives the tokens
  of one process.

Before decoding the ranks agree on the stages' ``decode_window`` (one ``all_gather_object`` of
each stage's answer, checked first to be a positive int so that only plain values travel, also for
no new tokens): the window decides when each stage's cache is rebuilt, so stages giving different
ones are the model's bug (its ``split_stages`` breaking the contract), raised on every rank in the
model's ``model_calls`` block, and a stage's ``decode_window`` raising or answering anything but a
positive int ends every rank with its line as below.

An error the model's code raises on one stage while decoding (its ``new_cache`` or
``forward_cached``; run in ``settings.model_calls``, so a plugin model's bug is its one-line
:class:`~deepseek.errors.PluginError`, as ``single`` blames it), or an answer of theirs against
the contract (:mod:`deepseek.models.cache_checks`: a new cache of a length other than 0, a
``forward_cached`` that does not add the positions it was fed to ``cache.length``, checked on the
stage before its output is sent on), ends every rank with its line, with
no message more per token: the stage sends
:func:`~deepseek_pro.strategies.pipeline_wire.send_refusal` in place of its hidden states, each
stage after it passes the refusal on, the last stage broadcasts a width of
:data:`~deepseek_pro.strategies.pipeline_wire.REFUSED` in place of its logits' width, and then every
rank gathers the ranks' errors (one ``all_gather_object``) and raises the first
(:func:`~deepseek_pro.strategies.metric_names.raise_shared`: the raising rank its own exception,
the others one with its line), instead of one rank raising while the others wait for a tensor
that never comes or die of the lost peer.

The whole model is still loaded on each rank's CPU before its stage is kept (the checkpoint
format is whole-model): host memory must hold the model once per process on a node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from deepseek.errors import UsageError
from deepseek.models.cache_checks import decode_window_of, fed_cached, fresh_cache
from deepseek.models.capabilities import model_capabilities
from deepseek.models.declared import generation_vocab_size
from deepseek.models.decoding import decode
from deepseek.models.protocol import TrainableModel
from deepseek.plugins.calls import BrokenAnswer
from deepseek_pro.strategies.metric_names import described, raise_shared
from deepseek_pro.strategies.pipeline_wire import REFUSED, recv_output, send_refusal, send_tensor

if TYPE_CHECKING:
    from deepseek_pro.strategies.pipeline import PipelineStrategy


class PipelinedModel(TrainableModel):
    """This rank's stage of a model served by the ``pipeline`` strategy (see the module docstring);
    it offers capability ``generation`` whatever the model's class, through its stages'
    ``cached_decoding`` (stages without are evaluated; :meth:`generate` refuses them)."""

    def __init__(self, strategy: PipelineStrategy, stage: nn.Module, vocab_size: int | None,
                 no_decoding: str | None = None) -> None:
        super().__init__()
        self.strategy = strategy
        self.stage = stage
        self.vocab_size = vocab_size
        """The whole model's declared vocabulary (``generation_vocab_size``; ``None``: unknown)."""
        self.no_decoding = no_decoding
        """Why :meth:`generate` is refused (a stage without ``cached_decoding``); ``None``: it decodes."""
        self._failed: Exception | None = None
        """What this stage's code raised in the current :meth:`generate` (see the module docstring)."""

    def forward(self, **batch: Any) -> Any:
        """The loss of ``batch`` through every stage, on every rank, with the metrics
        ``pipeline_loss`` returns beside it (a mapping, as ``forward`` returns them)."""
        self.strategy.engine_held("the served model's forward()")  # after teardown: its one line
        loss, metrics = self.strategy.evaluate(batch)
        return {"loss": loss, **metrics} if metrics else loss

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        on_token: Callable[[torch.Tensor], None] | None = None,
        static: Any = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """``idx`` ``(B, T)`` extended by ``max_new_tokens`` tokens, on every rank (call it on every
        rank with the same arguments); pipeline stages decode eagerly (``static`` must be ``None``)."""
        if self.no_decoding is not None:
            raise UsageError(self.no_decoding)
        if static is not None:
            raise UsageError("generate --strategy pipeline: the stages decode eagerly, not on a static cache; "
                             "leave out --cuda-graphs")
        self.strategy.engine_held("the served model's generate()")  # after teardown (the refusals above need none)
        self.stage.eval()
        self._failed = None
        return decode(self._next_logits, self._new_cache, idx, max_new_tokens, window=self._agreed_window(),
                      temperature=temperature, top_k=top_k, generator=generator, on_token=on_token, top_p=top_p,
                      repetition_penalty=repetition_penalty)

    def generation_vocab_size(self) -> int | None:
        """The whole model's vocabulary, as it declared it (the tokenizer check of ``deepseek generate``)."""
        return self.vocab_size

    def _stage_code(self, call: Callable[[], Any]) -> Any:
        """``call()``, this stage's model code, in ``settings.model_calls``; ``None`` where it
        raised, the error kept (raised on every rank at the next exchange: :meth:`_agreed_window`,
        :meth:`_from_last`)."""
        try:
            with self.strategy.settings.model_calls("generate"):
                return call()
        except Exception as exc:  # noqa: BLE001 - raised on every rank at the next logits
            self._failed = exc
            return None

    def _agreed_window(self) -> int:
        """The stages' one ``decode_window``, agreed on by every rank before decoding (one
        ``all_gather_object``, also when no token is asked). Each rank checks its stage's answer
        first (:func:`~deepseek.models.cache_checks.decode_window_of`: a positive int), so only plain
        values are exchanged (an answer that cannot be pickled would fail the exchange on its rank
        alone, the others dying of the lost peer); a stage's error, raising or answering wrong, is
        raised on every rank (:func:`~deepseek_pro.strategies.metric_names.raise_shared`). Stages
        giving different windows, whose caches would be rebuilt at different tokens (each rank
        then waiting on another's message), are the model's ``split_stages`` breaking its contract:
        every rank raises that :class:`~deepseek.plugins.calls.BrokenAnswer` in the model's
        ``model_calls`` block (a plugin model's one-line ``PluginError``, core's internal error)."""
        s = self.strategy
        window = self._stage_code(lambda: decode_window_of(self.stage))
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (s.pp_rank, window, None if self._failed is None else described(self._failed)))
        raise_shared(self._failed, [error for _, _, error in gathered])
        if any(w != window for _, w, _ in gathered):
            given = ", ".join(f"{w} on stage {stage}" for stage, w, _ in sorted(gathered, key=lambda g: g[0]))
            with s.settings.model_calls("split_stages"):
                raise BrokenAnswer(
                    f"split_stages({s.pp_size}) gives stages of different decode windows ({given}), so generate "
                    f"--strategy {s.name} would rebuild their KV caches at different tokens; every stage's "
                    "decode_window must return the whole model's (docs/plugins.md, 'Models'; --strategy tp or one "
                    "process serves the model meanwhile)")
        return window

    def _new_cache(self, batch: int, window: int) -> Any:
        return self._stage_code(lambda: fresh_cache(self.stage, batch, window))

    def _stage_forward(self, x: torch.Tensor, cache: Any) -> torch.Tensor:
        """The stage's output for ``x`` (token ids on the first stage, hidden states after it),
        on the last stage its last position's logits in fp32; its ``forward_cached`` held to the
        contract (:func:`~deepseek.models.cache_checks.fed_cached`: ``cache.length`` advanced by
        the positions fed), a broken answer raised on every rank like any error of the stage."""
        s = self.strategy
        out = fed_cached(self.stage, x if s.is_first else x.to(self._dtype()), cache)
        return out[:, -1].float() if s.is_last else out

    def _next_logits(self, ids: torch.Tensor, cache: Any) -> torch.Tensor:
        """The next position's logits on every rank: this stage's part of one forward through the
        stages, or, where a stage's code raised, that error on every rank (the module docstring)."""
        s = self.strategy
        x = ids.to(s.device) if s.is_first else recv_output(s.pp_peer(s.pp_rank - 1), s.comm_device, s.device)
        out = None
        if x is not None and self._failed is None:  # x None: an earlier stage refused
            out = self._stage_code(lambda: self._stage_forward(x, cache))
        if not s.is_last:
            following = s.pp_peer(s.pp_rank + 1)
            if x is None or self._failed is not None:
                send_refusal(following, s.comm_device)
            else:
                send_tensor(out, following, s.comm_device)
            out = None
        return self._from_last(out, ids.size(0)).to(ids.device)

    def _dtype(self) -> torch.dtype:
        return next(self.stage.parameters()).dtype

    def _from_last(self, logits: torch.Tensor | None, batch: int) -> torch.Tensor:
        """The last stage's ``(B, V)`` logits on every rank (its width sent first; a width of
        :data:`REFUSED`, the last stage having none: a stage's error, raised on every rank)."""
        s = self.strategy
        src = s.pp_peer(s.pp_size - 1)
        sent = logits.size(-1) if logits is not None else REFUSED if s.is_last else 0
        width = torch.tensor([sent], dtype=torch.int64, device=s.comm_device)
        dist.broadcast(width, src=src)
        if int(width.item()) == REFUSED:
            self._raise_failure()
        buf = logits.to(s.comm_device) if logits is not None else torch.empty(
            batch, int(width.item()), dtype=torch.float32, device=s.comm_device)
        dist.broadcast(buf, src=src)
        return buf

    def _raise_failure(self) -> None:
        """Every rank raises the first rank's error (one ``all_gather_object``)."""
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, None if self._failed is None else described(self._failed))
        raise_shared(self._failed, gathered)
        raise AssertionError("the last pipeline stage refused its logits, but no rank raised")


def place_stage(strategy: PipelineStrategy, model: nn.Module) -> PipelinedModel:
    """Keep this rank's stage of ``model`` (plain, on the CPU) on the strategy's device."""
    caps = model_capabilities(model)
    if "pipeline" not in caps:
        raise UsageError(
            f"--strategy {strategy.name}: the model ({type(model).__name__}) cannot be split into pipeline "
            "stages (capability 'pipeline'); use --strategy tp or one process"
        )
    blamed = strategy.settings.model_calls  # a plugin model's bug: its one line, on every rank alike
    with blamed("block_modules"):
        n_blocks = len(model.block_modules()) if "blocks" in caps else None  # type: ignore[operator]
    if n_blocks is not None and strategy.pp_size > n_blocks:
        raise UsageError(
            f"--strategy {strategy.name}: {strategy.pp_size} processes but the model has {n_blocks} blocks "
            f"(one stage per process, one block per stage at least); launch at most {n_blocks} processes"
        )
    with blamed("split_stages"):
        stages = model.split_stages(strategy.pp_size)  # type: ignore[operator]
    stage = stages[strategy.pp_rank]
    # every rank judges every stage alike: generate refuses on every rank or on none (eval never decodes)
    lacking = next((s for s in stages if "cached_decoding" not in model_capabilities(s)), None)
    refusal = None if lacking is None else (
        f"generate --strategy {strategy.name}: the model's stages ({type(lacking).__name__}) offer no KV-cache "
        "decoding (capability 'cached_decoding'); use --strategy tp or one process")
    vocab = generation_vocab_size(model, calls=blamed)
    del stages, model, lacking  # the other stages' weights go with them
    return PipelinedModel(strategy, stage.to(strategy.device).eval(), vocab, refusal).eval()
