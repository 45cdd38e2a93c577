"""The tenant's web page (``/ui``) in a real headless Chromium driven over the DevTools protocol:
its script runs, lists the tenant's jobs and states, draws the loss curve of a job from the
points of its ``metrics.jsonl`` and redraws it as lines are added (polling, no reload), and
shows an error and no data for a wrong token or another tenant's tenant or job. The token travels
in the URL fragment only: it is never in a request line or ``Referer`` the server receives.
Skips when Chromium is not installed (CI installs it: ``.ci/services/chromium.*``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _cdp import Browser, chromium
from _servicehelpers import TINY_TRAIN, Deploy, deploy, two_tenants
from _servicelive import live

from deepseek_enterprise.service.models import Job

BINARY = chromium()
pytestmark = pytest.mark.skipif(BINARY is None, reason="Chromium is not installed (apt-get install chromium; "
                                                        "CI: .ci/services/chromium.packages)")
ROWS = "[...document.querySelectorAll('#jobs tbody tr')].map(r => [Number(r.dataset.jobId), r.dataset.state])"
CURVE = ("({steps: document.getElementById('loss').dataset.steps, values: document.getElementById('loss').dataset.values,"
         " points: document.getElementById('loss').getAttribute('points'),"
         " val: document.getElementById('val').dataset.values})")


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert BINARY is not None
    b = Browser(BINARY)
    yield b
    b.close()


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Deploy]:
    d = two_tenants(tmp_path / "srv")
    yield d
    d.close()


def _loss_points(path: Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of the file's whole lines (a torn last line is left out)."""
    whole = path.read_text().rsplit("\n", 1)[0].splitlines()
    rows = [json.loads(line) for line in whole if line.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def _curve(b: Browser) -> tuple[list[tuple[int, float]], list[tuple[float, float]]]:
    """The drawn loss points: ``(step, loss)`` from the polyline's data, and its ``(x, y)``."""
    c = b.evaluate(CURVE)
    values = [(int(s), float(v)) for s, v in zip(c["steps"].split(","), c["values"].split(","), strict=True)] \
        if c["steps"] else []
    xy = [tuple(float(n) for n in p.split(",")) for p in c["points"].split()]
    assert len(xy) == len(values)
    return values, xy  # type: ignore[return-value]


def _check_drawing(values: list[tuple[int, float]], xy: list[tuple[float, float]]) -> None:
    """x grows with the step; a higher loss is drawn higher (a smaller y), within the plot."""
    for (s1, v1), (x1, y1), (s2, v2), (x2, y2) in zip(values, xy, values[1:], xy[1:], strict=False):
        assert (s2 > s1) == (x2 > x1)
        assert (v2 > v1) == (y2 < y1) and (v2 == v1) == (y2 == y1)
    assert all(56 <= x <= 628 and 12 <= y <= 292 for x, y in xy)


def test_the_page_lists_jobs_and_draws_a_live_loss_curve(svc: Deploy, browser: Browser) -> None:
    bob, vic = svc.tokens["bob"], svc.tokens["vic"]
    first = svc.submit("acme", bob).json()["id"]
    second = svc.submit("acme", bob).json()["id"]
    other = svc.submit("globex", svc.tokens["gil"]).json()["id"]
    with svc.store.session() as s:
        s.get(Job, first).move("starting")
        s.get(Job, first).move("running")
    run = svc.root / "tenants" / "acme" / "jobs" / str(first) / "runs" / "a"
    run.mkdir(parents=True)
    metrics = run / "metrics.jsonl"
    lines = [{"step": i, "loss": round(5.0 / i + 0.1 * (i % 3), 6), "lr": 0.001} for i in range(1, 6)]
    lines.insert(3, {"step": 3, "val_loss": 2.75})
    metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with live(svc) as srv:
        browser.open(f"{srv.url}/ui#token={vic}&tenant=acme&job={first}")
        browser.wait_for("document.getElementById('loss').dataset.values?.split(',').length === 5")
        browser.evaluate("window.stillTheSamePage = true")
        rows = browser.evaluate(ROWS)
        assert rows == [[second, "queued"], [first, "running"]]  # newest first; globex's job absent
        assert other not in [r[0] for r in rows]
        values, xy = _curve(browser)
        assert values == _loss_points(metrics)
        _check_drawing(values, xy)
        assert browser.evaluate(CURVE)["val"] == "2.75"
        assert browser.evaluate("document.getElementById('job-title').textContent") == f"job {first}: train running"
        # more metrics while the job runs (the last line torn, as in the middle of a write): redrawn, no reload
        with metrics.open("a") as f:
            f.write("".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\n" for i in range(6, 9)) + '{"step": 9, "lo')
        browser.wait_for("document.getElementById('loss').dataset.values.split(',').length === 8")
        values, xy = _curve(browser)
        assert values == _loss_points(metrics) and values[5:] == [(6, 1 / 6), (7, 1 / 7), (8, 1 / 8)]
        _check_drawing(values, xy)
        with metrics.open("a") as f:
            f.write('ss": 0.1}\n')  # the torn line completed
        browser.wait_for("document.getElementById('loss').dataset.values.split(',').length === 9")
        assert _curve(browser)[0][-1] == (9, 0.1)
        with svc.store.session() as s:
            s.get(Job, first).move("succeeded")
        browser.wait_for(f"document.querySelector('tr[data-job-id=\"{first}\"]').dataset.state === 'succeeded'")
        assert browser.evaluate("window.stillTheSamePage") is True
        # the token left the address bar, and no request the server saw carries it
        assert vic not in browser.evaluate("location.href")
        assert browser.evaluate("location.hash") == f"#tenant=acme&job={first}"
    secret = vic.split(".", 1)[1]
    assert srv.seen and not [line for line in srv.seen if secret in line or vic[:16] in line]
    assert any(line.startswith(f"GET /v1/tenants/acme/jobs/{first}/metrics?") for line in srv.seen)


def test_wrong_tokens_and_other_tenants_show_an_error_and_no_data(svc: Deploy, browser: Browser) -> None:
    bob, gil = svc.tokens["bob"], svc.tokens["gil"]
    mine = svc.submit("acme", bob).json()["id"]
    theirs = svc.submit("globex", gil).json()["id"]
    error = "document.getElementById('error').hidden ? '' : document.getElementById('error').textContent"
    with live(svc) as srv:
        browser.open(f"{srv.url}/ui#token={bob[:-2]}xx&tenant=acme")
        assert browser.wait_for(error) == "401: invalid token"
        assert browser.evaluate(ROWS) == [] and browser.evaluate("document.getElementById('login').hidden") is False
        # gil (globex) asks for acme: the API's 404, as for a tenant that does not exist
        browser.open(f"{srv.url}/ui#token={gil}&tenant=acme&job={mine}")
        assert browser.wait_for(error) == "404: no tenant 'acme'; see 'deepseek tenants list' for the tenants you are in"
        assert browser.evaluate(ROWS) == [] and _curve(browser)[0] == []
        # bob asks for globex's job id inside acme: 404 like a job that does not exist
        browser.open(f"{srv.url}/ui#token={bob}&tenant=acme&job={theirs}")
        assert browser.wait_for(error) == f"404: no job {theirs} in tenant 'acme'"
        assert browser.evaluate(ROWS) == [[mine, "queued"]] and _curve(browser)[0] == []
        # no fragment at all: a form asks for the token, nothing is fetched
        before = len(srv.seen)
        browser.open(f"{srv.url}/ui")
        browser.wait_for("document.getElementById('login').hidden === false")
        time.sleep(0.5)
        assert [line.split("?")[0] for line in srv.seen[before:]] == ["GET /ui"]
    headers = svc.client.get("/ui").headers
    assert "script-src 'sha256-" in headers["content-security-policy"] and "unsafe" not in headers["content-security-policy"]


def test_the_curve_of_a_real_training_job(tmp_path: Path, browser: Browser) -> None:
    d = deploy(tmp_path / "srv", run=True, grace_s=10)
    try:
        d.tenant("acme")
        bob = d.user("acme", "bob", "member")
        r = d.submit("acme", bob, args=[*TINY_TRAIN, "--max-steps", "100000", "--run-dir", "runs/long",
                                         "--set", "checkpoint.interval=0", "--set", "train.eval_interval=0"])
        assert r.status_code == 201, r.text
        job = r.json()["id"]
        metrics = d.root / "tenants" / "acme" / "jobs" / str(job) / "runs" / "long" / "metrics.jsonl"
        with live(d) as srv:
            browser.open(f"{srv.url}/ui#token={bob}&tenant=acme&job={job}")
            n = browser.wait_for("(document.getElementById('loss').dataset.values || '').split(',').length >= 3 && "
                                 "document.getElementById('loss').dataset.values.split(',').length", timeout=180)
            values, xy = _curve(browser)
            assert values == _loss_points(metrics)[:len(values)] and len(values) == n
            _check_drawing(values, xy)
            assert browser.evaluate("document.getElementById('run').value") == "runs/long"
            browser.wait_for(f"document.getElementById('loss').dataset.values.split(',').length > {n}", timeout=120)
            values, xy = _curve(browser)
            assert values == _loss_points(metrics)[:len(values)]
            _check_drawing(values, xy)
            assert d.call("POST", f"/v1/tenants/acme/jobs/{job}/cancel", bob).status_code == 200
            assert d.wait("acme", bob, job, {"cancelled", "failed", "lost"})["state"] == "cancelled"
            browser.wait_for(f"document.querySelector('tr[data-job-id=\"{job}\"]').dataset.state === 'cancelled'")
            time.sleep(1.5)  # the page reads the metrics once more after the end
            assert _curve(browser)[0] == _loss_points(metrics)
    finally:
        d.close()
