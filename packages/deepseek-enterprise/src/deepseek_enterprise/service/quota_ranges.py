"""The range of each of a tenant's quota fields: one rule for the server (:mod:`.api_admin`'s
``QuotaIn``, which :mod:`.rowcheck` applies to the rows read back too) and the command-line
clients (``deepseek tenants create`` and ``tenants quota``), which refuse a value out of range
before any request, as the server would (422). Nothing here imports the server."""

from __future__ import annotations

from dataclasses import dataclass

import click

from deepseek.cli.params import FiniteFloat, WholeRange

INT64_MAX = (1 << 63) - 1
"""The largest integer a database row holds (SQLite and PostgreSQL BIGINT): a larger id or quota
was an internal error (500) in the query that held it."""

MIN_RUNNING_JOBS = 1
"""The least ``running_jobs`` quota: at 0 every job of the tenant would wait in the queue for
ever (docs/service.md documents no pause), so the API refuses it (422) and a server refuses a
database holding it."""


@dataclass(frozen=True)
class QuotaRange:
    """A quota field's values: whole numbers (``kind`` int) or finite numbers from ``low`` to
    ``high``; ``low_open``: ``low`` itself excluded."""

    kind: type
    low: float
    high: float
    low_open: bool = False

    def bounds(self) -> dict[str, float]:
        """The pydantic ``Field`` bounds of this range (``ge``/``gt`` and ``le``)."""
        return {"gt" if self.low_open else "ge": self.low, "le": self.high}

    def option_type(self) -> click.ParamType:
        """The click type of the field's ``--OPTION``: the same range, refused in one line."""
        if self.kind is int:
            return WholeRange(int(self.low), int(self.high), min_open=self.low_open)
        return FiniteFloat(self.low, self.high, min_open=self.low_open)


QUOTA_RANGES: dict[str, QuotaRange] = {
    "devices": QuotaRange(int, 0, 4096),
    "running_jobs": QuotaRange(int, MIN_RUNNING_JOBS, 100_000),
    "queued_jobs": QuotaRange(int, 0, 100_000),
    "device_hours": QuotaRange(float, 0, 1e9),
    "period_days": QuotaRange(int, 1, 3660),
    "storage_bytes": QuotaRange(int, 0, INT64_MAX),
    "memory_bytes": QuotaRange(int, 1 << 26, INT64_MAX),
    "cpu_seconds": QuotaRange(int, 1, INT64_MAX),
    "cpus": QuotaRange(float, 0.01, 4096),
    "gpu_memory_fraction": QuotaRange(float, 0, 1, low_open=True),
}
"""Each quota field (``Quota``'s columns, ``QuotaIn``'s fields) and its range."""
