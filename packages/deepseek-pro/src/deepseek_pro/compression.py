"""Gradient-communication compression for DDP, with the bytes actually sent counted per step.

The methods are torch's DDP communication hooks (``torch.distributed.algorithms.ddp_comm_hooks``):

- ``none``: plain all-reduce of each gradient bucket;
- ``fp16`` / ``bf16``: the bucket is cast to 16 bits, all-reduced and cast back (2x fewer bytes
  for fp32 gradients);
- ``powersgd``: PowerSGD (Vogels et al., 2019) low-rank compression: each gradient matrix
  ``M (n x m)`` is sent as ``P (n x r)`` and ``Q (m x r)``; vectors (biases, norms) and matrices
  too small to gain ``min_compression_rate`` are all-reduced uncompressed, as is every bucket of
  the first ``start_iter`` iterations (vanilla warm-up). Error feedback keeps the compression
  error and adds it to the next step's gradient; warm start reuses last step's ``Q``.

:class:`CountingHook` wraps whichever hook is chosen and sums, per bucket, the elements handed to
the all-reduce calls times their element size (``comm_bytes``) next to the bucket's own size
(``comm_bytes_uncompressed``, what a plain all-reduce would send). For PowerSGD the elements of
``P``, ``Q`` and the uncompressed remainder are read from the hook state's own counter of
elements after compression, which the hook increments exactly by the sizes it all-reduces.
Counts are per rank: the payload each rank contributes to its all-reduces.

PowerSGD's state (error feedback, warm-start ``P`` and ``Q``, iteration count, generator) goes
into every checkpoint, one file per rank, so a resumed PowerSGD run goes on bit for bit
(:mod:`deepseek_pro.powersgd_state`; :meth:`CountingHook.track` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

METHODS = ("none", "fp16", "bf16", "powersgd")


@dataclass(frozen=True)
class PowerSGDConfig:
    """PowerSGD's knobs (see :class:`torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook.PowerSGDState`)."""

    rank: int = 1
    start_iter: int = 10
    error_feedback: bool = True
    warm_start: bool = True
    min_compression_rate: float = 2.0


class CountingHook:
    """A DDP communication hook that applies ``method`` and counts the bytes it sends.

    Register with ``ddp_model.register_comm_hook(state=None, hook=counter.as_hook())``; read and
    reset the counts with :meth:`take`.
    """

    def __init__(self, method: str, process_group: Any = None, powersgd: PowerSGDConfig | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown compression {method!r}; choose from {', '.join(METHODS)}")
        self.method = method
        self.process_group = process_group
        self.sent = 0
        self.uncompressed = 0
        self.buckets = 0
        self.powersgd_state: Any = None
        self.tracker: Any = None  # a PowerSGDTracker once track() is called
        if method == "powersgd":
            from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

            cfg = powersgd or PowerSGDConfig()
            self.powersgd_state = psgd.PowerSGDState(
                process_group=process_group,
                matrix_approximation_rank=cfg.rank,
                start_powerSGD_iter=cfg.start_iter,
                min_compression_rate=cfg.min_compression_rate,
                use_error_feedback=cfg.error_feedback,
                warm_start=cfg.warm_start,
                # Never log torch's own compression stats (we report ours per step).
                compression_stats_logging_frequency=2**62,
            )

    def track(self, params: list[Any]) -> Any:
        """Follow PowerSGD's state for checkpoints (``params``: the DDP-wrapped module's
        ``parameters()``); returns the :class:`~deepseek_pro.powersgd_state.PowerSGDTracker`, or
        None for the other methods, which keep no state."""
        if self.powersgd_state is not None:
            from deepseek_pro.powersgd_state import PowerSGDTracker

            self.tracker = PowerSGDTracker(self.powersgd_state, params)
        return self.tracker

    def as_hook(self) -> Any:
        """A plain function calling this counter, the form DDP's ``register_comm_hook`` accepts."""

        def counting_comm_hook(state, bucket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
            return self(state, bucket)

        return counting_comm_hook

    # Unannotated on purpose: DDP checks a hook's annotations against the real classes, and
    # postponed (string) annotations would fail that check.
    def __call__(self, _state, bucket):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN204
        """All-reduce ``bucket`` (a ``dist.GradBucket``) with the chosen compression; returns
        the future of the averaged bucket, as DDP expects."""
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as psgd

        buffer = bucket.buffer()
        size = buffer.element_size()
        self.uncompressed += buffer.numel() * size
        self.buckets += 1
        if self.method == "none":
            self.sent += buffer.numel() * size
            return default_hooks.allreduce_hook(self.process_group, bucket)
        if self.method == "fp16":
            self.sent += buffer.numel() * 2
            return default_hooks.fp16_compress_hook(self.process_group, bucket)
        if self.method == "bf16":
            self.sent += buffer.numel() * 2
            return default_hooks.bf16_compress_hook(self.process_group, bucket)
        state = self.powersgd_state
        if self.tracker is not None:
            self.tracker.before_hook(bucket)
        if state.iter < state.start_powerSGD_iter:  # vanilla all-reduce of the whole bucket
            self.sent += buffer.numel() * size
            fut = psgd.powerSGD_hook(state, bucket)
        else:
            before = state.total_numel_after_compression
            fut = psgd.powerSGD_hook(state, bucket)
            self.sent += (state.total_numel_after_compression - before) * size
        if self.tracker is not None:
            self.tracker.after_hook(bucket)
        return fut

    def take(self) -> dict[str, float]:
        """The counts since the last call (``comm_bytes``, ``comm_bytes_uncompressed``,
        ``comm_reduction`` = 1 - sent / uncompressed), then reset them."""
        out = {
            "comm_bytes": float(self.sent),
            "comm_bytes_uncompressed": float(self.uncompressed),
        }
        if self.uncompressed:
            out["comm_reduction"] = 1.0 - self.sent / self.uncompressed
        self.sent = self.uncompressed = self.buckets = 0
        return out
