"""The scheduler loop of the server process: reap ended jobs, stop cancelled ones, start queued
ones in fair-share order (``quotas.pick_next``), one pass every ``interval`` seconds in a thread.

Each state change is one transaction with its audit entry (actor ``scheduler``). A job's final
state: exit code 0 -> ``succeeded``; a job whose cancel was asked -> ``cancelled`` whatever its
code (``deepseek train`` exits 75 after its checkpoint); any other code -> ``failed``; gone with
no exit code -> ``lost``, or back to ``queued`` when the requeue-lost policy allows: a job is
started at most ``requeue_lost + 1`` times (``Job.attempts`` counts the starts), keeps its id and so
its place (before its tenant's jobs submitted after it), and each requeue is audited
(``job.requeue``). A job whose cancel was asked is never requeued.

Device-hours (``quotas``): each pass stops (as a cancel: SIGTERM, SIGKILL after the grace) the
running device jobs of a tenant whose ``device_hours`` are used up, audited ``job.stop``. Every
run that held devices leaves a ``DeviceUse`` row when it ends, lost or requeued ones included.

Starting a job is three steps. (1) One transaction locks its tenant's row, reads the job again
(so on PostgreSQL a submit or a cancel of that tenant commits wholly before or after it; SQLite
serialises every transaction), lets the executor ``reserve`` the start (the Slurm job name) and
commits the job ``starting`` with its GPUs, audited ``job.starting``: from here on it counts as
running for every quota. (2) The executor starts it, outside any transaction. (3) A transaction
commits it ``running`` with the executor's handle (pid and start time, Slurm id and name), audited
``job.start``; or ``failed`` (``job.failed``: the executor refused it); or back to ``queued`` in its
place when the executor cannot take jobs for now (``Unavailable``: Slurm's controller does not
answer; audited ``job.requeue``, not an attempt; ``cancelled`` instead when its cancel was asked
meanwhile): then nothing more starts for ``retry_s``.

A job found ``starting`` by a later pass or at start-up was left by a server killed between (1)
and (3) (or a failed commit of (3)): ``Executor.find`` says whether the start happened. Found (the
job alive, or ended since): ``running`` with that handle (``job.start``, "found after a restart"),
so it is never started twice; not started: ``queued`` again in its place, not counted as an
attempt (``job.requeue``), or ``cancelled`` when its cancel was asked; cannot tell yet
(``Unavailable``): it stays ``starting`` and is asked again in the next pass.

:meth:`Scheduler.recover` runs once at start-up, before the API answers: ``starting`` jobs as
above; a ``running`` job whose process is still alive (same pid, same start time, and for the
local executor the same boot: ``jobstate.alive``) is re-attached and watched; one that ended while the server was down gets its state from the exit code its
wrapper wrote; one gone without a code becomes ``lost`` (or is requeued, as above). Queued jobs
keep their order (ids). An exit code that cannot be read (``UNREADABLE``) fails the job with the
reason the executor gives.

An executor method that raises what its contract does not name (``start`` anything but
``OSError``; ``reserve``, ``find``, ``finished``, ``terminate`` or ``kill`` anything but
``Unavailable`` where it is allowed): that job alone fails, with one line naming the executor, its
distribution and the method (``executor NAME (DIST VERSION): start() raised RuntimeError: ...``),
logged once; its slot is free and the passes go on for every other job. An exception from
``reason`` leaves the reason out. The check of each call is
:func:`~deepseek_enterprise.service.executor_calls.call_executor`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from deepseek_enterprise.service import gpushare, quotas
from deepseek_enterprise.service.executor import UNREADABLE, Executor, Launch, Started, Unavailable
from deepseek_enterprise.service.executor_calls import (  # noqa: F401 (REF_MAX re-exported)
    REF_MAX,
    ExecutorBroke,
    call_executor,
    checked_ref,
)
from deepseek_enterprise.service.jobpaths import PathRefused
from deepseek_enterprise.service.models import ACTIVE_STATES, DeviceUse, Job, Tenant, utcnow
from deepseek_enterprise.service.store import Store

log = logging.getLogger("deepseek.server")
class Scheduler:
    """Runs queued jobs on ``executor`` with at most ``slots`` running at once and ``gpus`` as
    the device pool. ``origin`` names the executor in messages, ``executor NAME (DIST VERSION)``
    for a registered one (``server_cli.pick_executor``); by default its class name."""

    def __init__(self, store: Store, executor: Executor, *, slots: int, gpus: list[str],
                 interval: float = 0.5, requeue_lost: int = 0, retry_s: float = 5.0, origin: str = "",
                 plugin_env: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.plugin_env = dict(plugin_env or {})
        """The plugin settings every job of this server runs with (``Launch.plugin_env``)."""
        self.origin = origin or f"executor {type(executor).__name__}"
        self.requeue_lost = requeue_lost
        self.executor = executor
        self.slots = slots
        self.gpus = list(gpus)
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._term_sent: dict[int, float] = {}
        self._unavailable = False
        self.retry_s = retry_s
        self._retry_at = -1.0
        self._undecided: set[int] = set()

    # -- the loop ---------------------------------------------------------------------------

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="deepseek-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.close()

    def wake(self) -> None:
        """Run a pass now (after a submit or a cancel)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # a pass that failed is retried; the server keeps answering
                log.exception("scheduler pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def step(self) -> None:
        """One pass: reap, stop, start."""
        self._reap()
        self._enforce_device_hours()
        self._stop_cancelled()
        while self._start_one():
            pass

    # -- the parts --------------------------------------------------------------------------

    def _call(self, method: str, *args: object, allowed: tuple[type[BaseException], ...] = (Unavailable,)) -> object:
        """``executor.method(*args)`` checked against its contract (:func:`call_executor`)."""
        return call_executor(self.executor, self.origin, method, *args, allowed=allowed)

    def _broke(self, job: Job, message: str, s: Session) -> None:
        """Fail ``job`` for an executor that broke on it: one line in the log, none in later passes."""
        log.error("job %s failed: %s", job.id, message)
        self._term_sent.pop(job.id, None)
        if job.state == "running":
            self._device_use(job, s)
        job.move("failed", message=message[:2000])
        self.store.audit("scheduler", "job.failed", tenant=job.tenant.name, target=f"job {job.id}",
                         result=job.message, session=s)

    def _device_use(self, job: Job, s: Session) -> None:
        """The ``DeviceUse`` row of a run that held devices and ends now."""
        if job.devices > 0 and job.started_at is not None:
            s.add(DeviceUse(tenant_id=job.tenant_id, job_id=job.id, devices=job.devices, started_at=job.started_at,
                            ended_at=utcnow()))

    def _finish(self, job: Job, code: int | bool, s: Session) -> None:
        self._device_use(job, s)
        if code is False and not job.cancel_requested and job.attempts <= self.requeue_lost:
            attempt = job.attempts
            job.move("queued", message=f"attempt {attempt} was lost (gone, no exit code); requeued")
            self._term_sent.pop(job.id, None)
            self.store.audit("scheduler", "job.requeue", tenant=job.tenant.name, target=f"job {job.id}",
                             result=f"attempt {attempt} lost; requeued (at most {self.requeue_lost + 1} starts)",
                             session=s)
            return
        if code is False:
            job.move("lost", message="the job's process is gone and left no exit code")
        elif code == UNREADABLE:
            why = self._reason(job) or "its exit code cannot be read"
            job.move("failed", message=why)
        elif job.cancel_requested:
            job.move("cancelled", exit_code=int(code))
        elif code == 0:
            job.move("succeeded", exit_code=0)
        else:
            reason = self._reason(job)  # out of memory, CPU time...
            job.move("failed", exit_code=int(code), message=f"{reason} (exit code {code})" if reason else f"exit code {code}")
        self._term_sent.pop(job.id, None)
        self.store.audit("scheduler", f"job.{job.state}", tenant=job.tenant.name, target=f"job {job.id}",
                         result=job.message if job.state == "failed" or job.exit_code is None
                         else f"exit code {job.exit_code}",
                         session=s)

    def _reason(self, job: Job) -> str:
        try:
            return str(self._call("reason", job.id, Path(job.workspace), allowed=()))
        except ExecutorBroke as exc:
            log.error("job %s: %s", job.id, exc)
            return ""

    def _finished(self, job: Job, s: Session) -> int | None | bool:
        """The executor's ``finished`` for a running job (None while it runs or while the executor
        cannot tell); a job it broke on is failed here (its process may still run) and None."""
        try:
            return self._call("finished", job.id, job.pid, job.pid_start, Path(job.workspace))  # type: ignore[return-value]
        except Unavailable:
            return None
        except ExecutorBroke as exc:
            self._broke(job, f"could not watch it (its process may still run): {exc}", s)
            return None

    def _reap(self) -> None:
        with self.store.session() as s:
            for job in s.scalars(select(Job).where(Job.state == "starting")).all():
                self._resolve(job, s)  # left by a server killed while starting it (module docstring)
        with self.store.session() as s:
            for job in s.scalars(select(Job).where(Job.state == "running")).all():
                code = self._finished(job, s)
                if code is not None:
                    self._finish(job, code, s)

    def _enforce_device_hours(self) -> None:
        """Stop the running device jobs of tenants whose device-hours are used up (module docstring)."""
        now = utcnow()
        with self.store.session() as s:
            jobs = s.scalars(select(Job).where(Job.state == "running", Job.devices > 0,
                                               Job.cancel_requested.is_(False))).all()
            spent: dict[int, tuple[float, float] | None] = {}
            for job in jobs:
                t = job.tenant
                if t.id not in spent:
                    spent[t.id] = quotas.device_hours_out(s, t, now)
                out = spent[t.id]
                if out is None:
                    continue
                job.cancel_requested = True
                job.message = (f"stopped: tenant {t.name!r} used {out[0]:.2f} of its {out[1]:g} device-hours in "
                               f"the last {t.quota.period_days} days (quota device_hours)")
                self.store.audit("scheduler", "job.stop", tenant=t.name, target=f"job {job.id}", result=job.message,
                                 session=s)

    def _stop_cancelled(self) -> None:
        now = time.monotonic()
        with self.store.session() as s:
            jobs = s.scalars(select(Job).where(Job.state == "running", Job.cancel_requested.is_(True))).all()
            targets = [(j.id, j.pid, j.pid_start) for j in jobs]
        for job_id, pid, pid_start in targets:
            sent = self._term_sent.get(job_id)
            try:
                if sent is None:
                    self._term_sent[job_id] = now
                    self._call("terminate", pid, pid_start)
                elif now - sent > self.executor.grace_s:
                    self._call("kill", pid, pid_start)
            except Unavailable:
                continue  # asked again in the next pass (kill) or after the grace
            except ExecutorBroke as exc:
                with self.store.session() as s:
                    self._broke(s.get(Job, job_id), f"could not stop it (its process may still run): {exc}", s)

    def gpu_loads(self, s: Session) -> dict[str, float]:
        """How much of each pool GPU running jobs hold (``gpushare.loads``)."""
        running = s.execute(select(Job.gpus, Job.gpu_fraction).where(Job.state.in_(ACTIVE_STATES))).all()
        return gpushare.loads(self.gpus, [(gpus, fraction) for gpus, fraction in running])

    def free_gpus(self, s: Session) -> list[str]:
        """The GPUs no running job holds any of."""
        return gpushare.available(self.gpus, self.gpu_loads(s), None)

    def _share(self, tenant: Tenant) -> float | None:
        """The share of each GPU a job of ``tenant`` holds (None: whole GPUs, always so with an
        executor that cannot cap GPU memory: ``Executor.shares_gpus``)."""
        return tenant.quota.gpu_memory_fraction if self.executor.shares_gpus else None

    def _launch(self, job: Job, gpus: list[str], share: float | None) -> Launch:
        quota = job.tenant.quota
        return Launch(job.id, job.tenant.name, job.command, list(job.args), job.config, dict(job.files), gpus,
                      quota.memory_bytes, quota.cpu_seconds, quota.cpus, share, ref=job.pid_start or "",
                      plugin_env=dict(self.plugin_env))

    def _running(self, job: Job, started: Started, s: Session, note: str = "") -> None:
        job.move("running", pid=started.pid, pid_start=started.pid_start, workspace=str(started.workspace))
        result = f"{note}pid {started.pid}, CUDA_VISIBLE_DEVICES={job.gpus!r}; {started.isolation}"
        self.store.audit("scheduler", "job.start", tenant=job.tenant.name, target=f"job {job.id}",
                         result=result[:2000], session=s)

    def _fail(self, job: Job, exc: Exception, s: Session) -> None:
        if isinstance(exc, ExecutorBroke):
            self._broke(job, f"could not start: {exc}", s)
            return
        job.move("failed", message=f"could not start: {exc}")
        self.store.audit("scheduler", "job.failed", tenant=job.tenant.name, target=f"job {job.id}",
                         result=job.message, session=s)

    def _cancel_unstarted(self, job: Job, s: Session) -> None:
        """A starting job whose cancel was asked and that never started: ``cancelled``."""
        job.move("cancelled", message=job.message or "cancelled before it started")
        self.store.audit("scheduler", "job.cancelled", tenant=job.tenant.name, target=f"job {job.id}",
                         result=job.message, session=s)

    def _start_one(self) -> bool:
        if self._unavailable and time.monotonic() < self._retry_at:
            return False  # the executor said it cannot take jobs: not before retry_s
        with self.store.session() as s:  # (1) committed starting (module docstring)
            load = self.gpu_loads(s)
            job = quotas.pick_next(s, slots=self.slots, free_devices=len(gpushare.available(self.gpus, load, None)),
                                   free_for=lambda t: len(gpushare.available(self.gpus, load, self._share(t))))
            if job is None:
                return False
            s.execute(select(Tenant.id).where(Tenant.id == job.tenant_id).with_for_update())
            s.refresh(job)  # read again under the tenant's lock (module docstring)
            if job.state != "queued":
                return True
            share = self._share(job.tenant) if job.devices else None
            gpus = gpushare.assign(self.gpus, load, job.devices, share) or []
            try:
                ref = checked_ref(self.origin, self._call("reserve", job.id, allowed=(OSError,)))
            except (OSError, ExecutorBroke) as exc:  # no state folder (or a plugin's bad ref or bug): nothing started
                job.move("starting")  # and failed, in this one transaction (queued -> failed is no transition)
                self._fail(job, exc, s)
                return True
            job.move("starting", pid=None, pid_start=ref or None, gpus=",".join(gpus), gpu_fraction=share)
            quotas.started(job.tenant, utcnow())
            launch = self._launch(job, gpus, share)
            self.store.audit("scheduler", "job.starting", tenant=job.tenant.name, target=f"job {job.id}",
                             result=f"CUDA_VISIBLE_DEVICES={job.gpus!r}" + (f"; share {share!r} of each GPU" if share
                                                                             is not None else "")
                             + (f"; {ref}" if ref else ""), session=s)
        try:  # (2)
            started = self._call("start", launch, allowed=(PathRefused, OSError))
        except Unavailable as exc:  # nothing was started: back to its place in the queue
            if not self._unavailable:
                log.warning("jobs stay queued: %s", exc)
            self._unavailable, self._retry_at = True, time.monotonic() + self.retry_s
            with self.store.session() as s:
                job = s.get(Job, launch.job_id)
                if job.cancel_requested:  # asked while it was starting: it never started
                    self._cancel_unstarted(job, s)
                    return False
                job.move("queued")
                self.store.audit("scheduler", "job.requeue", tenant=job.tenant.name, target=f"job {job.id}",
                                 result=f"not started ({exc}); back in its place, not counted as an attempt"[:2000],
                                 session=s)
            return False
        except (PathRefused, OSError, ExecutorBroke) as exc:  # a start() returning no Started included
            with self.store.session() as s:
                self._fail(s.get(Job, launch.job_id), exc, s)
            return True
        self._unavailable = False
        with self.store.session() as s:  # (3)
            self._running(s.get(Job, launch.job_id), started, s)
        return True

    def _resolve(self, job: Job, s: Session) -> None:
        """A job left ``starting``: running, queued again or cancelled (module docstring)."""
        launch = self._launch(job, [g for g in job.gpus.split(",") if g], job.gpu_fraction)
        try:
            started = self._call("find", launch, allowed=(OSError,))
        except OSError as exc:  # Unavailable among them: asked again in the next pass
            if job.id not in self._undecided:
                log.warning("job %s stays starting for now: %s", job.id, exc)
                self._undecided.add(job.id)
            return
        except ExecutorBroke as exc:
            self._undecided.discard(job.id)
            self._broke(job, f"could not tell whether it started (its process may run): {exc}", s)
            return
        self._undecided.discard(job.id)
        if started is not None:
            self._running(job, started, s, note="found after a restart (the server stopped while starting it): ")
        elif job.cancel_requested:
            self._cancel_unstarted(job, s)
        else:
            job.move("queued")
            self.store.audit("scheduler", "job.requeue", tenant=job.tenant.name, target=f"job {job.id}",
                             result="the server stopped while starting it and it never started; back in its "
                                    "place, not counted as an attempt", session=s)

    def recover(self) -> None:
        """After a restart: resolve the jobs left starting; re-attach, conclude or mark ``lost``
        the jobs left running."""
        with self.store.session() as s:
            for job in s.scalars(select(Job).where(Job.state == "starting")).all():
                self._resolve(job, s)
        with self.store.session() as s:
            for job in s.scalars(select(Job).where(Job.state == "running")).all():
                code = self._finished(job, s)
                if job.state != "running":
                    continue  # the executor broke on it: failed
                if code is None:
                    self.store.audit("scheduler", "job.reattach", tenant=job.tenant.name, target=f"job {job.id}",
                                     result=f"pid {job.pid} still running", session=s)
                else:
                    self._finish(job, code, s)
