"""Which GPUs a job may get: whole GPUs, or shares of GPUs where the tenant's quota allows it.

A tenant's ``gpu_memory_fraction`` quota decides:

- ``None`` (the default): each of its jobs holds its GPUs **whole**; such a GPU carries no other
  job, and it only goes to a job when nothing runs on it. Tenants without the quota therefore
  never share a GPU with anyone.
- a fraction ``f`` in (0, 1]: each of its jobs takes ``f`` of each GPU it gets, and a GPU may
  carry several such jobs (of any tenants whose quota allows sharing) as long as the fractions
  on it add up to at most 1.0. The job's process gets a GPU memory cap of ``f`` of each visible
  device (``DEEPSEEK_GPU_MEMORY_FRACTION``, applied by :mod:`.gpucap` before the job's code runs).

The load of a GPU is the sum of what the running jobs on it hold (a whole GPU counts 1.0). A
shared job goes to the fullest GPUs it still fits on (best fit), so that whole GPUs stay free for
jobs that need them; ties go to the pool's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EPSILON = 1e-9
"""Slack for float sums (0.1 + 0.2 + 0.7 fits a GPU)."""

ENV = "DEEPSEEK_GPU_MEMORY_FRACTION"
"""The variable that carries a shared job's GPU memory cap to its wrapper."""


def loads(pool: Sequence[str], running: Iterable[tuple[str, float | None]]) -> dict[str, float]:
    """The load of each GPU of ``pool`` from running jobs' ``(gpus, fraction)``: ``gpus`` as
    ``CUDA_VISIBLE_DEVICES`` (comma-separated), ``fraction`` None for whole GPUs. GPUs not in
    the pool (the pool changed since the job started) are ignored."""
    out = {g: 0.0 for g in pool}
    for gpus, fraction in running:
        for g in (x for x in gpus.split(",") if x):
            if g in out:
                out[g] += 1.0 if fraction is None else float(fraction)
    return out


def available(pool: Sequence[str], load: dict[str, float], fraction: float | None) -> list[str]:
    """The GPUs a job holding ``fraction`` of each (None: whole) could get now, best first."""
    need = 1.0 if fraction is None else fraction
    fits = [(i, g) for i, g in enumerate(pool)
            if (load.get(g, 0.0) <= EPSILON if fraction is None else load.get(g, 0.0) + need <= 1.0 + EPSILON)]
    return [g for _i, g in sorted(fits, key=lambda ig: (-load.get(ig[1], 0.0), ig[0]))]


def assign(pool: Sequence[str], load: dict[str, float], devices: int, fraction: float | None) -> list[str] | None:
    """``devices`` GPUs for a job holding ``fraction`` of each, or None when they are not free."""
    if devices <= 0:
        return []
    fits = available(pool, load, fraction)
    return fits[:devices] if len(fits) >= devices else None


def check_fraction(value: object, where: str) -> float:
    """A fraction read back from the environment or the database: a number in (0, 1], else
    ``ValueError`` with one line naming ``where``."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r}: not a number; use a fraction in (0, 1] such as 0.4") from None
    if not 0.0 < f <= 1.0:
        raise ValueError(f"{where}={value!r}: use a fraction in (0, 1] such as 0.4")
    return f
