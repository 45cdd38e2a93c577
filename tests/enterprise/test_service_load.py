"""The job service under load, on SQLite and PostgreSQL: 200 submits released at once by 16 client
threads for 4 tenants against a real ``deepseek server`` (uvicorn, its scheduler running the jobs
through the local executor), then every submit accounted for and the audit log replayed
(``loadcheck``): no tenant ever had more queued or running jobs than its quota, the server never
ran more than its slots. The jobs are ``deepseek eval --help`` (they start, run and succeed in a
fraction of a second, so the running quotas are exercised, not only the queue)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _servicehelpers import BACKENDS, ServerProcess, database

from deepseek_enterprise.service import loadcheck

QUOTAS = {"acme": {"running_jobs": 1, "queued_jobs": 10}, "globex": {"running_jobs": 1, "queued_jobs": 10},
          "initech": {"running_jobs": 2, "queued_jobs": 8}, "umbrella": {"running_jobs": 1, "queued_jobs": 5}}
SLOTS = 3
JOB = {"command": "eval", "args": ["--help"]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_200_concurrent_submits_are_all_accounted_for_and_quotas_held(backend: str, tmp_path: Path) -> None:
    with database(backend, tmp_path / "srv") as url:
        srv = ServerProcess(tmp_path / "srv", "--slots", str(SLOTS), db_url=url)
        try:
            tokens = srv.setup(QUOTAS)
            for tok in tokens.values():  # each token's slow hash verified once, before the burst
                assert srv.call("GET", "/v1/me", tok).status_code == 200
            plan = [(t, tokens[t]) for _ in range(50) for t in QUOTAS]
            submits = loadcheck.burst(srv.url, plan, JOB, threads=16)
            end = time.monotonic() + 300
            while True:
                lists = {t: srv.call("GET", f"/v1/tenants/{t}/jobs?limit=10000", tok).json()
                         for t, tok in tokens.items()}
                if all(j["state"] not in ("queued", "starting", "running") for js in lists.values() for j in js):
                    break
                assert time.monotonic() < end, lists
                time.sleep(0.5)
            audit = srv.call("GET", "/v1/audit?limit=10000", srv.token).json()
        finally:
            srv.kill()
    limits = {t: loadcheck.Limits(q["queued_jobs"], q["running_jobs"]) for t, q in QUOTAS.items()}
    seen = loadcheck.replay(audit, limits, SLOTS, devices=[])  # the server has no devices: no job holds one
    assert seen.problems == []
    assert len(submits) == 200 and {s.status for s in submits} == {201, 429}
    accepted = [s.job_id for s in submits if s.status == 201]
    assert len(set(accepted)) == len(accepted) and set(accepted) == set(seen.accepted)
    for t, q in QUOTAS.items():
        mine = {s.job_id for s in submits if s.tenant == t and s.status == 201}
        assert {j["id"] for j in lists[t]} == mine  # nothing of a refused submit, nothing twice
        assert all(j["state"] == "succeeded" for j in lists[t]), lists[t]
        refused = [s for s in submits if s.tenant == t and s.status == 429]
        assert seen.refused[(t, 429)] == len(refused) > 0
        assert {s.detail for s in refused} == {
            f"tenant '{t}' has {q['queued_jobs']} queued job(s), its quota is {q['queued_jobs']} "
            "(quota queued_jobs): wait for some to start"}
        # the quotas were reached (the check above is not vacuous) and never passed
        assert seen.peak_queued[t] == q["queued_jobs"] and 1 <= seen.peak_running[t] <= q["running_jobs"]
    assert 1 <= seen.peak_running_all <= SLOTS
    figures = loadcheck.percentiles([s.seconds for s in submits])
    print(f"\n{backend}: {len(accepted)} accepted, {200 - len(accepted)} refused; submit latency "
          f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms")


def test_the_replay_finds_what_breaks_the_rules() -> None:
    limits = {"a": loadcheck.Limits(queued_jobs=1, running_jobs=1)}

    def e(i: int, action: str, target: str, result: str = "ok") -> dict:
        return {"id": i, "action": action, "tenant": "a", "target": target, "result": result}

    good = [e(1, "job.submit", "job 1 (train)"), e(2, "job.submit", "train job", "refused 429: full"),
            e(3, "job.starting", "job 1"), e(4, "job.start", "job 1"), e(5, "job.submit", "job 2 (train)"),
            e(6, "job.succeeded", "job 1"), e(7, "job.starting", "job 2"), e(8, "job.start", "job 2"),
            e(9, "job.requeue", "job 2"), e(10, "job.starting", "job 2"), e(11, "job.requeue", "job 2"),
            e(12, "job.starting", "job 2"), e(13, "job.cancelled", "job 2")]
    seen = loadcheck.replay(reversed(good), limits, slots=1)  # any order in, id order replayed
    assert seen.problems == [] and seen.states == {1: "succeeded", 2: "cancelled"}
    assert seen.refused == {("a", 429): 1} and seen.accepted == {1: "a", 2: "a"}
    bad = [e(1, "job.submit", "job 1 (train)"), e(2, "job.submit", "job 2 (train)"), e(3, "job.starting", "job 1"),
           e(4, "job.starting", "job 2"), e(5, "job.succeeded", "job 3"), e(6, "job.submit", "job 1 (train)")]
    assert loadcheck.replay(bad, limits, slots=1).problems == [
        "audit 2: tenant a has 2 queued, quota 1",
        "audit 4: tenant a runs 2, quota 1", "audit 4: 2 jobs run, the server has 1 slots",  # starting is running
        "audit 5: job.succeeded of job 3 in state None", "audit 6: job 1 submitted twice"]
    skipped = [e(1, "job.submit", "job 1 (train)"), e(2, "job.start", "job 1"),  # never recorded starting
               e(3, "job.starting", "job 1"), e(4, "job.start", "job 1"), e(5, "job.start", "job 1")]
    assert loadcheck.replay(skipped, limits, slots=1).problems == ["audit 2: job.start of job 1 in state queued",
                                                                  "audit 5: job.start of job 1 in state running"]
