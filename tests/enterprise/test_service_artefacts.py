"""A job's artefacts through the API (list, download a file or a folder as tar, the metrics of a
run) and ``deepseek jobs files|download``: contents exact, hostile paths refused with the right
status and one line and nothing outside the workspace served, big files streamed."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _servicehelpers import Deploy, run_cli, two_tenants
from _servicelive import live

SECRET = b"TOPSECRET-outside-the-workspace"


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Deploy]:
    d = two_tenants(tmp_path / "srv")
    yield d
    d.close()


def _job_with_files(d: Deploy) -> tuple[int, Path]:
    """A job of acme (bob's) whose workspace holds a log, a run folder and a checkpoint."""
    job = d.submit("acme", d.tokens["bob"]).json()["id"]
    ws = d.root / "tenants" / "acme" / "jobs" / str(job)
    (ws / "runs" / "a" / "checkpoints").mkdir(parents=True)
    (ws / "job.log").write_text("step 1\nstep 2\n")
    (ws / "runs" / "a" / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n')
    (ws / "runs" / "a" / "checkpoints" / "step-2.pt").write_bytes(bytes(range(256)) * 4000)
    return job, ws


def _files(ws: Path) -> dict[str, bytes]:
    return {str(p.relative_to(ws)): p.read_bytes() for p in sorted(ws.rglob("*")) if p.is_file() and not p.is_symlink()}


def _untar(data: bytes) -> tuple[dict[str, bytes], list[str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = t.getmembers()
        return ({m.name: t.extractfile(m).read() for m in members if m.isfile()},  # type: ignore[union-attr]
                [m.name for m in members])


def test_list_and_download_files_and_folders(svc: Deploy) -> None:
    job, ws = _job_with_files(svc)
    vic = svc.tokens["vic"]  # a viewer reads artefacts
    base = f"/v1/tenants/acme/jobs/{job}"
    listing = svc.call("GET", f"{base}/files", vic).json()
    assert [(e["path"], e["type"], e["size"]) for e in listing["entries"]] == [
        ("job.log", "file", 14), ("runs", "dir", None), ("runs/a", "dir", None), ("runs/a/checkpoints", "dir", None),
        ("runs/a/checkpoints/step-2.pt", "file", 1_024_000), ("runs/a/metrics.jsonl", "file", 25)]
    assert listing["truncated"] is False
    assert [e["path"] for e in svc.call("GET", f"{base}/files", vic, params={"path": "runs/a/checkpoints"}).json()
            ["entries"]] == ["runs/a/checkpoints/step-2.pt"]
    r = svc.call("GET", f"{base}/download", vic, params={"path": "runs/a/checkpoints/step-2.pt"})
    assert r.status_code == 200 and r.content == (ws / "runs/a/checkpoints/step-2.pt").read_bytes()
    assert r.headers["content-length"] == "1024000" and r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''step-2.pt"
    r = svc.call("GET", f"{base}/download", vic, params={"path": "runs/a"})
    assert r.headers["content-type"] == "application/x-tar"
    files, names = _untar(r.content)
    assert names == ["a", "a/checkpoints", "a/checkpoints/step-2.pt", "a/metrics.jsonl"]
    assert files == {f"a/{k[len('runs/a/'):]}": v for k, v in _files(ws).items() if k.startswith("runs/a/")}
    files, names = _untar(svc.call("GET", f"{base}/download", vic).content)  # the whole workspace
    assert names[0] == f"job-{job}" and files == {f"job-{job}/{k}": v for k, v in _files(ws).items()}
    queued = svc.submit("acme", svc.tokens["bob"]).json()["id"]
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{queued}/files", vic)
    assert (r.status_code, r.json()) == (404, {"detail": f"job {queued} has no workspace yet (it has not started)"})


def test_hostile_paths_get_the_right_status_and_nothing_outside_is_served(svc: Deploy, tmp_path: Path) -> None:
    job, ws = _job_with_files(svc)
    bob, gil = svc.tokens["bob"], svc.tokens["gil"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    theirs = svc.submit("globex", gil).json()["id"]
    their_ws = svc.root / "tenants" / "globex" / "jobs" / str(theirs)
    their_ws.mkdir(parents=True)
    (their_ws / "job.log").write_bytes(SECRET)
    os.symlink(outside / "secret.txt", ws / "leak.txt")          # a link to a file outside
    os.symlink(outside, ws / "runs" / "outdir")                   # a link to a folder outside
    os.symlink(their_ws, ws / "peer")                             # a link to another tenant's job
    os.symlink("../../../../../../..", ws / "runs" / "a" / "up")  # a relative link climbing out
    os.mkfifo(ws / "pipe")                                        # would block a plain open()
    base = f"/v1/tenants/acme/jobs/{job}"
    cases = [  # (raw query, status, detail)
        ("path=..", 422, "path '..': '..' is not allowed; name a path inside the job's workspace"),
        ("path=runs/../../../../../etc/passwd", 422,
         "path 'runs/../../../../../etc/passwd': '..' is not allowed; name a path inside the job's workspace"),
        ("path=%2e%2e%2f%2e%2e%2fglobex%2fjobs", 422,
         "path '../../globex/jobs': '..' is not allowed; name a path inside the job's workspace"),
        ("path=/etc/passwd", 422, "path '/etc/passwd': absolute paths are not allowed; name a path relative to the "
                                  "job's workspace (e.g. runs/a/metrics.jsonl)"),
        (f"path={outside}/secret.txt", 422, f"path '{outside}/secret.txt': absolute paths are not allowed; name a "
                                            "path relative to the job's workspace (e.g. runs/a/metrics.jsonl)"),
        ("path=job.log%00.txt", 422, "path: a NUL character is not allowed"),
        ("path=%252e%252e", 404, f"job {job}: no '%2e%2e' in its workspace"),  # encoded twice: a plain name
        ("path=leak.txt", 409, f"job {job}: 'leak.txt': 'leak.txt' is a symbolic link; links are not followed"),
        ("path=runs/outdir/secret.txt", 409,
         f"job {job}: 'runs/outdir/secret.txt': 'outdir' is a symbolic link; links are not followed"),
        ("path=peer/job.log", 409, f"job {job}: 'peer/job.log': 'peer' is a symbolic link; links are not followed"),
        ("path=runs/a/up/etc/passwd", 409,
         f"job {job}: 'runs/a/up/etc/passwd': 'up' is a symbolic link; links are not followed"),
        ("path=pipe", 409, f"job {job}: 'pipe' is not a regular file or folder; only those are served"),
        ("path=nothing/here", 404, f"job {job}: no 'nothing/here' in its workspace"),
        # a name no file system takes (was 409 "cannot be read (ENAMETOOLONG)"): no such file, as a job's paths at submit
        (f"path=runs/{'n' * 300}/x", 404, f"job {job}: no 'runs/{'n' * 300}/x' in its workspace (a name in it is "
                                          "longer than the 255 bytes a file system takes)"),
    ]
    for query, status, detail in cases:
        for route in ("download", "files"):
            started = time.monotonic()
            r = svc.call("GET", f"{base}/{route}?{query}", bob)
            assert (r.status_code, r.json()) == (status, {"detail": detail}), (route, query)
            assert time.monotonic() - started < 5  # the FIFO did not block
    r = svc.call("GET", f"{base}/metrics?run={'n' * 300}", bob)
    assert (r.status_code, r.json()["detail"]) == (404, f"job {job}: no '{'n' * 300}/metrics.jsonl' in its workspace "
                                                        "(a name in it is longer than the 255 bytes a file system takes)")
    r = svc.call("GET", f"{base}/metrics?run=..%2F..", bob)
    assert (r.status_code, r.json()["detail"]) == (422, "path '../..': '..' is not allowed; name a path inside the "
                                                        "job's workspace")
    # folders: links listed as links, never entered, never in a tar
    entries = {e["path"]: e["type"] for e in svc.call("GET", f"{base}/files", bob).json()["entries"]}
    assert {k: entries[k] for k in ("leak.txt", "runs/outdir", "peer", "runs/a/up", "pipe")} == {
        "leak.txt": "link", "runs/outdir": "link", "peer": "link", "runs/a/up": "link", "pipe": "other"}
    assert not [p for p in entries if p.startswith(("peer/", "runs/outdir/", "runs/a/up/"))]
    whole = svc.call("GET", f"{base}/download", bob).content
    files, names = _untar(whole)
    assert SECRET not in whole and files == {f"job-{job}/{k}": v for k, v in _files(ws).items()}
    assert not {f"job-{job}/{n}" for n in ("leak.txt", "runs/outdir", "peer", "runs/a/up", "pipe")} & set(names)
    # another tenant's job id: the same 404 as an id never used; another tenant: 404
    for route in ("files", "download", "metrics"):
        r = svc.call("GET", f"/v1/tenants/acme/jobs/{theirs}/{route}", bob)
        assert (r.status_code, r.json()) == (404, {"detail": f"no job {theirs} in tenant 'acme'"})
        assert svc.call("GET", f"/v1/tenants/acme/jobs/999/{route}", bob).json() == \
            {"detail": "no job 999 in tenant 'acme'"}
        r = svc.call("GET", f"/v1/tenants/globex/jobs/{theirs}/{route}", bob)
        assert (r.status_code, r.json()) == (404, {"detail": "no tenant 'globex'; see 'deepseek tenants list' for the tenants you are in"})
        assert svc.call("GET", f"{base}/{route}", None).status_code == 401
    # a job that put a link in place of its own workspace (to another tenant's job) is refused
    other = svc.submit("acme", bob).json()["id"]
    os.symlink(their_ws, svc.root / "tenants" / "acme" / "jobs" / str(other))
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{other}/download", bob, params={"path": "job.log"})
    assert r.status_code == 409 and SECRET not in r.content and "symbolic link" in r.json()["detail"]


def test_a_name_that_is_not_utf8_is_listed_as_other_and_the_rest_served(svc: Deploy) -> None:
    """A job may name its files with any bytes: one that is not UTF-8 made the listing, and the
    metrics' run list (which walks the workspace), a 500 (the JSON answer could not encode it).
    It is listed as ``other`` with its bytes escaped; the rest is listed, and the curve served."""
    job, ws = _job_with_files(svc)
    bad = os.fsencode(ws) + b"/runs/b\xff"
    os.mkdir(bad)
    with open(bad + b"/metrics.jsonl", "wb") as f:  # written last: the run the metrics would default to
        f.write(b'{"step": 1, "loss": 9.0}\n')
    bob = svc.tokens["bob"]
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{job}/files?path=runs", bob)
    assert r.status_code == 200, r.text
    assert [(e["path"], e["type"], e["size"]) for e in r.json()["entries"]] == [
        ("runs/a", "dir", None), ("runs/a/checkpoints", "dir", None),
        ("runs/a/checkpoints/step-2.pt", "file", 1_024_000), ("runs/a/metrics.jsonl", "file", 25),
        ("runs/b\\xff", "other", None), ("runs/b\\xff/metrics.jsonl", "other", None)]
    r = svc.call("GET", f"/v1/tenants/acme/jobs/{job}/metrics", bob)
    assert r.status_code == 200, r.text
    assert (r.json()["runs"], r.json()["run"], r.json()["loss"]) == (["runs/a"], "runs/a", [[1, 2.5]])


def test_metrics_points_from_an_offset_and_a_replaced_file(svc: Deploy) -> None:
    job, ws = _job_with_files(svc)
    bob = svc.tokens["bob"]
    url = f"/v1/tenants/acme/jobs/{job}/metrics"
    run = ws / "runs" / "b"
    run.mkdir()
    lines = ['{"step": 1, "loss": 3.5, "lr": 0.1}', '{"step": 2, "loss": NaN}', "not json", '{"loss": 1.0}',
             '{"step": 2, "val_loss": 3.25}', '{"step": 3, "loss": 3}']
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 4, "lo')
    first = svc.call("GET", url, bob).json()  # the newest run by default
    assert first["runs"] == ["runs/a", "runs/b"] and first["run"] == "runs/b" and first["state"] == "queued"
    assert (first["loss"], first["val_loss"], first["skipped"]) == ([[1, 3.5], [3, 3]], [[2, 3.25]], 3)
    assert first["offset"] == 0 and first["next_offset"] == len("\n".join(lines)) + 1  # the torn line waits
    with (run / "metrics.jsonl").open("a") as f:
        f.write('ss": 2.0}\n')
    params = {"run": "runs/b", "offset": first["next_offset"], "file_id": first["file_id"]}
    second = svc.call("GET", url, bob, params=params).json()
    assert (second["loss"], second["val_loss"], second["reset"], second["runs"]) == ([[4, 2.0]], [], False, None)
    again = svc.call("GET", url, bob, params={**params, "offset": second["next_offset"]}).json()
    assert (again["loss"], again["next_offset"]) == ([], second["next_offset"])
    # a resumed run rewrites its metrics (a new file): the answer starts again from byte 0
    tmp = run / ".metrics.tmp"
    tmp.write_text('{"step": 1, "loss": 9.0}\n')
    os.replace(tmp, run / "metrics.jsonl")
    third = svc.call("GET", url, bob, params={**params, "offset": second["next_offset"]}).json()
    assert (third["reset"], third["offset"], third["loss"]) == (True, 0, [[1, 9.0]])
    a = svc.call("GET", url, bob, params={"run": "runs/a"}).json()
    assert (a["run"], a["loss"]) == ("runs/a", [[1, 2.5]])
    r = svc.call("GET", url, bob, params={"run": "runs/none"})
    assert (r.status_code, r.json()["detail"]) == (404, f"job {job}: no 'runs/none/metrics.jsonl' in its workspace")


def test_a_big_file_streams_in_chunks(svc: Deploy) -> None:
    job, ws = _job_with_files(svc)
    big = ws / "runs" / "a" / "checkpoints" / "big.pt"
    size = 256 << 20
    with big.open("wb") as f:  # sparse, with marks that must arrive in place
        for at in (0, 100 << 20, size - 7):
            f.seek(at)
            f.write(b"MARK-%d" % (at % 10))
        f.truncate(size)
    want = hashlib.sha256()
    with big.open("rb") as f:
        while chunk := f.read(1 << 20):
            want.update(chunk)
    got, received = hashlib.sha256(), 0
    with live(svc) as srv:
        tracemalloc.start()
        try:
            with httpx.stream("GET", f"{srv.url}/v1/tenants/acme/jobs/{job}/download",
                              params={"path": "runs/a/checkpoints/big.pt"},
                              headers={"Authorization": f"Bearer {svc.tokens['bob']}"}, timeout=60) as r:
                assert r.status_code == 200 and r.headers["content-length"] == str(size)
                for chunk in r.iter_raw():
                    got.update(chunk)
                    received += len(chunk)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received == size and got.hexdigest() == want.hexdigest()
    assert peak < 32 << 20, f"peak Python memory {peak / 2**20:.1f} MiB while serving a 256 MiB file"


def test_jobs_files_and_download_commands(svc: Deploy, tmp_path: Path) -> None:
    job, ws = _job_with_files(svc)
    os.symlink("/etc/passwd", ws / "leak")
    bob, gil = svc.tokens["bob"], svc.tokens["gil"]
    out = tmp_path / "out"
    with live(svc) as srv:
        code, text, _ = run_cli("jobs", "files", str(job), "runs/a", token=bob, url=srv.url)
        assert code == 0 and text.splitlines() == [
            "dir                 runs/a/checkpoints/", "file       1024000  runs/a/checkpoints/step-2.pt",
            "file            25  runs/a/metrics.jsonl"]
        # a name the job chose with a line break and a terminal escape: one line, escaped (it was
        # printed raw, splitting the entry and styling the viewer's terminal)
        (ws / "odd").mkdir()
        (ws / "odd" / "a\nb\x1b[2J").write_text("x")
        code, text, _ = run_cli("jobs", "files", str(job), "odd", token=bob, url=srv.url)
        assert (code, text) == (0, "file             1  $'odd/a\\nb\\x1b[2J'\n")
        shutil.rmtree(ws / "odd")
        code, text, err = run_cli("jobs", "download", str(job), "--out", str(out), token=bob, url=srv.url)
        assert (code, text) == (0, f"{out}/job-{job}/: 3 files, 1024039 bytes\n"), err
        assert _files(out / f"job-{job}") == _files(ws) and not (out / f"job-{job}" / "leak").exists()
        code, text, _ = run_cli("jobs", "download", str(job), "runs/a/checkpoints/step-2.pt", "--out", str(out),
                            token=bob, url=srv.url)
        assert (code, text) == (0, f"{out}/step-2.pt: 1024000 bytes\n")
        assert (out / "step-2.pt").read_bytes() == (ws / "runs/a/checkpoints/step-2.pt").read_bytes()
        code, text, _ = run_cli("jobs", "download", str(job), "runs/a", "--out", str(out), token=bob, url=srv.url)
        assert code == 0 and _files(out / "a") == {k[len("runs/a/"):]: v for k, v in _files(ws).items()
                                                   if k.startswith("runs/a/")}
        before = sorted(p.name for p in out.iterdir())
        for argv, token, words in (
                (("runs/a",), bob, f"--out {out}: {out}/a already exists; remove it or choose another --out"),
                (("leak",), bob, f"409: job {job}: 'leak': 'leak' is a symbolic link; links are not followed"),
                (("../../globex",), bob, "422: path '../../globex': '..' is not allowed"),
                (("/etc",), bob, "422: path '/etc': absolute paths are not allowed"),
                (("job.log", "--tenant", "acme"), gil, "404: no tenant 'acme'")):
            code, text, err = run_cli("jobs", "download", str(job), *argv, "--out", str(out), token=token, url=srv.url)
            assert code == 2 and text == "" and len(err.strip().splitlines()) == 1 and words in err, (argv, err)
        assert sorted(p.name for p in out.iterdir()) == before  # nothing written, no part file left
        # a refused download creates no --out folder (it left an empty one behind)
        code, text, err = run_cli("jobs", "download", "99", "--out", str(tmp_path / "new" / "deeper"), token=bob,
                                  url=srv.url)
        assert code == 2 and "404: no job 99 in tenant 'acme'" in err and not (tmp_path / "new").exists(), err
        # a job id beyond a database integer was a 500 (the query overflowed)
        code, text, err = run_cli("jobs", "show", str(1 << 64), token=bob, url=srv.url)
        assert code == 2 and "422" in err and "job_id" in err and len(err.strip().splitlines()) == 1, err
        # a token with a character no header may carry was an internal error (or 'cannot reach the server')
        # a trailing line break got past the token pattern's '$' (then 'cannot reach the server')
        for bad in ("dsk_\u00e9", "dsk_000000000000.aaaaaaaaaaaaaaaaaaaa\nx", "dsk_000000000000.aaaaaaaaaaaaaaaaaaaa\n",
                    "garbage"):
            code, text, err = run_cli("jobs", "list", token=bad, url=srv.url)
            assert (code, text, err.strip()) == (2, "", "error: DEEPSEEK_TOKEN: not an API token (dsk_<12 hex "
                                                 "digits>.<secret>); set it to a token as deepseek tenants token "
                                                 "printed it"), err
    code, _text, err = run_cli("jobs", "download", str(job), "--out", str(tmp_path / "x"), token=bob, url=srv.url)
    assert code == 2 and "cannot reach the server" in err and not (tmp_path / "x").exists()
