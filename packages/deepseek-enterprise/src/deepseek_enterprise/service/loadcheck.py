"""Checking a running job server under load: a burst of concurrent submits through its HTTP API
(:func:`burst`, each request's latency measured by the client) and a replay of its audit log
(:func:`replay`) that proves the quotas held at every instant.

The replay walks the audit entries in id order (the order the server committed them: SQLite
serialises every transaction; on PostgreSQL a submit, a cancel and a start of the same tenant all
lock the tenant's row before they write, so one tenant's entries are in commit order) and keeps
each job's state from its entries:

- ``job.submit`` ok -> queued (a job id seen twice is a problem); refused -> counted by status;
- ``job.starting`` queued -> starting; ``job.start`` starting -> running;
- ``job.requeue`` running or starting -> queued;
- ``job.cancel`` ``ok`` (a queued job) -> cancelled; ``ok: stopping`` changes nothing yet;
- ``job.succeeded|failed|cancelled|lost`` -> final (``failed`` also from queued or starting:
  could not start; ``cancelled`` also from starting: never started, its cancel asked);
- anything else about a job (``job.reattach``, ``job.stop``) changes no state.

After every entry it counts queued and running jobs per tenant (a ``starting`` job counts as
running, as the quotas count it) and running jobs in all: a count above the tenant's
``queued_jobs`` (requeues excepted: a requeued job was admitted before), ``running_jobs`` or the
server's slots, or a transition the state machine forbids, is a problem.

Given the server's configured devices (``devices``: its ``--gpus`` pool), it also follows the GPUs
each job holds: a ``job.starting`` entry says them (``CUDA_VISIBLE_DEVICES='0,1'``, and ``share F
of each GPU`` for a job that shares its GPUs), held until the job leaves ``starting``/``running``.
A GPU the pool does not have, a GPU held past its capacity (whole jobs count 1.0, shared ones
their share; more than 1.0 means two jobs hold it at once where that is not allowed), or a
``job.starting`` that does not say its GPUs in that form, is a problem.
Used by ``benchmarks/service_load.py`` and the load tests; nothing here starts a server.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_TARGET = re.compile(r"^job (\d+)\b")
_FINAL = {"job.succeeded": "succeeded", "job.failed": "failed", "job.cancelled": "cancelled", "job.lost": "lost"}
_ACTIVE = ("starting", "running")
_GPUS = re.compile(r"^CUDA_VISIBLE_DEVICES='([^',]*(?:,[^',]+)*)'(?:; share ([0-9]*\.?[0-9]+(?:e-?[0-9]+)?) of each GPU)?(?:;|$)")


@dataclass(frozen=True)
class Limits:
    """A tenant's quota as far as the replay checks it."""

    queued_jobs: int
    running_jobs: int


@dataclass
class Replay:
    """What the audit log says happened (module docstring)."""

    accepted: dict[int, str] = field(default_factory=dict)
    """Job id -> tenant, for every accepted submit."""
    refused: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(tenant, HTTP status) -> refused submits."""
    states: dict[int, str] = field(default_factory=dict)
    peak_queued: dict[str, int] = field(default_factory=dict)
    peak_running: dict[str, int] = field(default_factory=dict)
    peak_running_all: int = 0
    problems: list[str] = field(default_factory=list)


def _held(entry: Mapping[str, Any], job: int) -> tuple[list[str], float | None] | str:
    """The GPUs and share (None: whole) a ``job.starting`` entry gives ``job``, or the problem."""
    result = str(entry["result"])
    m = _GPUS.match(result)
    share = None if m is None or m.group(2) is None else float(m.group(2))
    if m is None or (share is not None and not 0.0 < share <= 1.0):
        return f"audit {entry['id']}: job.starting of job {job} does not say its GPUs ({result[:80]!r})"
    return [g for g in m.group(1).split(",") if g], share


def _check_devices(entry: Mapping[str, Any], job: int, held: Mapping[int, tuple[list[str], float | None]],
                   devices: Sequence[str]) -> list[str]:
    """Problems of the GPUs ``job`` took at ``entry`` (``held``: job -> GPUs, share, the job
    included): one the server does not have in ``devices``, or one now held past its capacity."""
    from deepseek_enterprise.service.gpushare import EPSILON

    problems = []
    for g in held[job][0]:
        if g not in devices:
            problems.append(f"audit {entry['id']}: job {job} holds GPU {g!r}, which the server does not have "
                            f"(its devices: {', '.join(devices) or 'none'})")
        on = [(j, share) for j, (gpus, share) in sorted(held.items()) if g in gpus]
        total = sum(1.0 if share is None else share for _, share in on)
        if total > 1.0 + EPSILON:
            who = ", ".join(f"{j} ({'whole' if share is None else f'share {share:g}'})" for j, share in on)
            problems.append(f"audit {entry['id']}: GPU {g!r} is held by jobs {who} at once ({total:g} of 1)")
    return problems


def replay(entries: Iterable[Mapping[str, Any]], limits: Mapping[str, Limits], slots: int,
           devices: Sequence[str] | None = None) -> Replay:
    """Replay audit entries (dicts as ``GET /v1/audit`` returns them, any order) against
    ``limits`` per tenant and ``slots`` running jobs in all; and, given the server's ``devices``,
    the GPUs the jobs hold (module docstring)."""
    out = Replay()
    queued: Counter[str] = Counter()
    running: Counter[str] = Counter()
    held: dict[int, tuple[list[str], float | None]] = {}
    for e in sorted(entries, key=lambda e: int(e["id"])):
        action, tenant, result = str(e["action"]), str(e["tenant"]), str(e["result"])
        m = _TARGET.match(str(e["target"]))
        if not action.startswith("job.") or m is None:
            if action == "job.submit" and result.startswith("refused "):
                out.refused[(tenant, int(result.split()[1].rstrip(":")))] += 1
            continue
        job = int(m.group(1))
        before = out.states.get(job)
        after = before
        if action == "job.submit":
            if result.startswith("refused "):
                out.refused[(tenant, int(result.split()[1].rstrip(":")))] += 1
                continue
            if job in out.accepted:
                out.problems.append(f"audit {e['id']}: job {job} submitted twice")
                continue
            out.accepted[job] = tenant
            after = "queued"
        elif action == "job.starting":
            after = "starting" if before == "queued" else None
        elif action == "job.start":
            after = "running" if before == "starting" else None
        elif action == "job.requeue":
            after = "queued" if before in _ACTIVE else None
        elif action == "job.cancel" and result == "ok":
            after = "cancelled" if before == "queued" else None
        elif action in _FINAL:
            ok = before == "running" or (action == "job.failed" and before in ("queued", "starting")) \
                or (action == "job.cancelled" and before == "starting")
            after = _FINAL[action] if ok else None
        if after is None:
            out.problems.append(f"audit {e['id']}: {action} of job {job} in state {before}")
            continue
        if devices is not None:
            if after not in _ACTIVE:
                held.pop(job, None)
            elif action == "job.starting":
                gpus = _held(e, job)
                if isinstance(gpus, str):
                    out.problems.append(gpus)
                else:
                    held[job] = gpus
                    out.problems += _check_devices(e, job, held, devices)
        owner = out.accepted.get(job, tenant)
        queued[owner] += (after == "queued") - (before == "queued")
        running[owner] += (after in _ACTIVE) - (before in _ACTIVE)
        out.states[job] = after
        lim = limits.get(owner)
        if lim is not None and action != "job.requeue" and queued[owner] > lim.queued_jobs:
            out.problems.append(f"audit {e['id']}: tenant {owner} has {queued[owner]} queued, quota {lim.queued_jobs}")
        if lim is not None and running[owner] > lim.running_jobs:
            out.problems.append(f"audit {e['id']}: tenant {owner} runs {running[owner]}, quota {lim.running_jobs}")
        if sum(running.values()) > slots:
            out.problems.append(f"audit {e['id']}: {sum(running.values())} jobs run, the server has {slots} slots")
        out.peak_queued[owner] = max(out.peak_queued.get(owner, 0), queued[owner])
        out.peak_running[owner] = max(out.peak_running.get(owner, 0), running[owner])
        out.peak_running_all = max(out.peak_running_all, sum(running.values()))
    return out


@dataclass(frozen=True)
class Submit:
    """One submit of a burst: who, the HTTP status, the job id (accepted) or the detail."""

    tenant: str
    status: int
    job_id: int | None
    detail: str
    seconds: float


def burst(url: str, plan: Sequence[tuple[str, str]], job: Mapping[str, Any], threads: int) -> list[Submit]:
    """Submit ``job`` once per ``(tenant, token)`` of ``plan`` from ``threads`` client threads (each
    its own keep-alive connection), all released at once; every request's latency as the client
    saw it."""
    import httpx

    results: list[Submit | None] = [None] * len(plan)
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            start.wait()
            for i in range(k, len(plan), threads):
                tenant, token = plan[i]
                t0 = time.perf_counter()
                r = client.post(f"/v1/tenants/{tenant}/jobs", json=dict(job),
                                headers={"Authorization": f"Bearer {token}"})
                took = time.perf_counter() - t0
                body = r.json()
                results[i] = Submit(tenant, r.status_code, body.get("id") if r.status_code == 201 else None,
                                    str(body.get("detail", "")), took)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if any(r is None for r in results):
        raise RuntimeError("a client thread failed before it sent all its submits")
    return [r for r in results if r is not None]


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99 and max of ``seconds``, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "max_ms": max(seconds) * 1000}


def per_tenant(submits: Iterable[Submit]) -> dict[str, dict[int, int]]:
    """tenant -> HTTP status -> count."""
    out: dict[str, Counter[int]] = defaultdict(Counter)
    for s in submits:
        out[s.tenant][s.status] += 1
    return {t: dict(c) for t, c in out.items()}
