"""A ``tune`` job its study's check would refuse before the first trial (the components' own keys,
the tuner's rules, files its config names in its workspace) is refused at submit with the study's
line: that check imports torch, so the server runs it in a child process in the job's workspace
laid out (service.studycheck); the server's own process imports none
(test_service_submit_check_commands.py::test_a_submit_imports_no_torch_into_the_server)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import pytest
from _servicehelpers import Deploy, submit_checks, two_tenants
from _submitlines import job_line
from sqlalchemy import select, text

from deepseek_enterprise.service import cgroups
from deepseek_enterprise.service.executor import LocalExecutor
from deepseek_enterprise.service.models import User
from deepseek_enterprise.service.scheduler import Scheduler
from deepseek_enterprise.service.studycheck import Refusals

SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2, log = true }\n'
TUNE = ["--study", "s", "--space", "space.toml", "--trials", "4"]
KEY = '[model]\nname = "tiny"\nd_modle = 32\n'


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    yield from submit_checks(tmp_path_factory)


@pytest.mark.parametrize(("config", "args"), [
    ("[data]\neval_batches = 0\n", TUNE),                       # the training tuner's own rule for the config
    (KEY, TUNE),                                                # a component's own key, with its did-you-mean
])
def test_a_tune_job_its_study_would_refuse_is_refused_at_submit_with_the_studys_line(
        svc: Deploy, tmp_path: Path, config: str, args: list[str]) -> None:
    files = {"space.toml": SPACE}
    expected = job_line(tmp_path, "tune", config, files, args)
    with svc.store.session() as s:
        jobs = s.scalar(text("select count(*) from jobs"))
    refusals = _service(svc).study_refusals.recent(_user_id(svc, "bob"))
    assert svc.submit("acme", svc.tokens["vic"], command="tune", config=config, files=files, args=args).status_code == 403
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=config, files=files, args=args)
    assert (r.status_code, r.json()["detail"]) == (422, expected)
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs")) == jobs
    assert _service(svc).study_refusals.recent(_user_id(svc, "bob")) == refusals + 1  # the member's rate counts it


def _service(d: Deploy) -> Any:
    return d.client.app.state.service


def _user_id(d: Deploy, name: str) -> int:
    with d.store.session() as s:
        return s.scalar(select(User.id).where(User.name == name))


def test_the_study_check_is_a_server_setting(svc: Deploy) -> None:
    # deepseek server --no-study-check: no child at submit, the job checks its study when it runs
    _service(svc).study_check = False
    try:
        r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
    finally:
        _service(svc).study_check = True


def test_a_member_whose_checks_refused_too_many_jobs_has_tune_jobs_checked_when_they_run(svc: Deploy) -> None:
    # a refused job is no job, so no quota counts it; the member's refusals do: past the limit the
    # job is accepted without a child (queued: the tenant's queue quotas count it)
    gil = _user_id(svc, "gil")
    before, _service(svc).study_refusals = _service(svc).study_refusals, Refusals(limit=2)
    try:
        _service(svc).study_refusals.count(gil)
        _service(svc).study_refusals.count(gil)
        r = svc.submit("globex", svc.tokens["gil"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
        assert _service(svc).study_refusals.recent(gil) == 2
    finally:
        _service(svc).study_refusals = before


def test_a_members_submits_at_once_run_no_more_checks_than_refusals_left(svc: Deploy,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # one refusal left: two submits at once each passed the count of refusals alone, both ran a
    # child and both were refused, 3 of a limit of 2; a check running counts as a refusal may
    import threading

    from deepseek_enterprise.service import studycheck

    # a child that refuses after a second in the study check's place: the two submits overlap
    slow = "import time; time.sleep(1); print('{\"refused\": \"refused\"}')"
    monkeypatch.setattr(studycheck, "CHILD_ARGS", ("-I", "-c", slow))
    gil = _user_id(svc, "gil")
    before, _service(svc).study_refusals = _service(svc).study_refusals, Refusals(limit=2)
    answers: list[Any] = []
    try:
        _service(svc).study_refusals.count(gil)
        submits = [threading.Thread(target=lambda: answers.append(svc.submit(
            "globex", svc.tokens["gil"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)))
            for _ in range(2)]
        for submit in submits:
            submit.start()
        for submit in submits:
            submit.join(timeout=300)
        assert sorted(r.status_code for r in answers) == [201, 422], [r.text for r in answers]
        assert _service(svc).study_refusals.recent(gil) == 2
    finally:
        _service(svc).study_refusals = before


def test_the_study_check_runs_under_the_jobs_cpu_time_limit(svc: Deploy) -> None:
    # the tenant's cpu_seconds quota holds the child as it holds the job's processes (RLIMIT_CPU):
    # 1 s cannot import torch, so the kernel ends the child, which gives no verdict: accepted
    put = svc.call("PUT", "/v1/tenants/globex/quota", svc.admin, json={"cpu_seconds": 1})
    assert put.status_code == 200, put.text
    try:
        r = svc.submit("globex", svc.tokens["gil"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
    finally:
        assert svc.call("PUT", "/v1/tenants/globex/quota", svc.admin, json={"cpu_seconds": None}).status_code == 200


def test_an_absolute_study_folder_or_storage_does_not_leave_the_check_to_the_job(svc: Deploy) -> None:
    # the study check never reads --out or --storage (the job checks the study's folder when it runs)
    studies = svc.root / "tenants" / "acme" / "studies"
    args = [*TUNE, "--out", f"{studies}/s", f"--storage=journal:{studies}/s.log"]
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=args)
    assert r.status_code == 422 and "model.d_modle" in r.json()["detail"], r.text


def test_the_study_check_reads_the_jobs_files_where_the_job_reads_them(svc: Deploy) -> None:
    # the dataset's relative path names the job's own file: the child runs in the workspace laid out
    files = {"space.toml": SPACE, "corpus.txt": "hello world, a corpus of text for the tune job\n" * 50}
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config='[data]\npath = "corpus.txt"\n', files=files,
                   args=TUNE)
    assert r.status_code == 201, r.text


def test_the_study_check_is_left_to_the_job_where_the_submit_cannot_see_the_workspace(
        svc: Deploy, tmp_path: Path) -> None:
    # an absolute path in the tenant's folder: what it holds may change before the job starts
    tenant = svc.root / "tenants" / "acme"
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY + f'[data]\npath = "{tenant}/data/c.txt"\n',
                   files={"space.toml": SPACE}, args=TUNE)
    assert r.status_code == 201, r.text
    # an executor that lays out workspaces otherwise (its own Executor.at_start) says what is there
    class Volume(LocalExecutor):
        def at_start(self, path: PurePath, has_config: bool, files: Mapping[str, str]) -> str:
            return "unknown" if path.name == "preset.toml" else super().at_start(path, has_config, files)

    d = two_tenants(tmp_path / "srv")
    try:
        d.client.app.state.service.scheduler = Scheduler(d.store, Volume(tmp_path / "srv"), slots=1, gpus=[])
        r = d.submit("acme", d.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
    finally:
        d.close()


class _Cgroupfs(cgroups.Cgroups):
    """A cgroup v2 folder with the files the kernel makes with each cgroup (this machine lets no
    test write a real one with the memory controller: test_service_isolation.py runs that where it
    can): what the server writes there is read back, the kernel's enforcement aside."""

    def create(self, job_id: int | str, memory_bytes: int | None, cpus: float | None) -> Path:
        self.path(job_id).mkdir()
        for name in ("cgroup.procs", "memory.max", "memory.events"):
            (self.path(job_id) / name).write_text("")
        return super().create(job_id, memory_bytes, cpus)


def test_under_cgroups_the_study_check_is_limited_as_jobs_are_not_by_address_space(tmp_path: Path) -> None:
    # importing torch maps 3.1 GB of address space for 0.5 GB resident: under RLIMIT_AS 1.5 GiB the
    # child failed to import it and refused the job with that ("model 'tiny' ... could not be
    # loaded ... libtorch_cpu.so: failed to map segment") where the server holds jobs by a cgroup's
    # total (Executor.local_limits), which holds the job: the child gets a cgroup of its own, the
    # tenant's memory.max
    folder = tmp_path / "cg"
    folder.mkdir()
    d = two_tenants(tmp_path / "srv", memory_bytes=3 << 29)
    try:
        executor = LocalExecutor(tmp_path / "srv", limits=cgroups.Detection(_Cgroupfs(folder, ("memory",)), ""))
        d.client.app.state.service.scheduler = Scheduler(d.store, executor, slots=1, gpus=[])
        r = d.submit("acme", d.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 422 and "model.d_modle" in r.json()["detail"], r.text
    finally:
        d.close()
    [check] = folder.glob("check-*")
    assert (check / "memory.max").read_text() == str(3 << 29)
    assert (check / "cgroup.procs").read_text().isdigit()  # the child joined it before it ran


def test_an_executor_whose_limits_break_its_contract_leaves_the_study_check_to_the_job(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Odd(LocalExecutor):
        def local_limits(self) -> Any:
            return "cgroup v2"

    d = two_tenants(tmp_path / "srv")
    try:
        d.client.app.state.service.scheduler = Scheduler(d.store, Odd(tmp_path / "srv"), slots=1, gpus=[])
        r = d.submit("acme", d.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
    finally:
        d.close()
    assert "local_limits() returned 'cgroup v2' (str), not a cgroups.Detection" in caplog.text


def test_a_submit_waits_for_a_free_study_check_a_bounded_time(svc: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    # each waiting submit holds one of the server's request threads: with every check slot taken,
    # a tune submit is accepted after SLOT_WAIT_S (its job checks its study when it runs), never
    # queued behind the others for as long as they take
    import threading
    import time

    from deepseek_enterprise.service import studycheck

    monkeypatch.setattr(studycheck, "SLOT_WAIT_S", 0.5)
    for _ in range(studycheck.AT_ONCE):
        assert studycheck._slots.acquire(timeout=60)
    answer: list[Any] = []
    start = time.monotonic()
    submit = threading.Thread(target=lambda: answer.append(svc.submit(
        "acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)), daemon=True)
    try:
        submit.start()
        submit.join(timeout=30)
        waited = time.monotonic() - start
    finally:
        for _ in range(studycheck.AT_ONCE):
            studycheck._slots.release()
        submit.join(timeout=300)
    assert answer and waited < 30, f"the submit still waited for a check slot after {waited:.0f} s"
    assert answer[0].status_code == 201, answer[0].text


@pytest.mark.parametrize(("args", "status"), [(["--help"], 201), ([*TUNE, "--version"], 422)])
def test_a_tune_job_that_runs_no_study_starts_no_child(svc: Deploy, monkeypatch: pytest.MonkeyPatch,
                                                       args: list[str], status: int) -> None:
    # `tune --help` prints its help and succeeds: accepted, as any command's help is, and no child
    # (one started, imported torch and found nothing to check); `--version` is no option of tune's:
    # refused by the command line's parse, before any child
    from deepseek_enterprise.service import proclimits

    started: list[Any] = []
    spawn = proclimits.spawn
    monkeypatch.setattr(proclimits, "spawn", lambda argv, *a, **k: started.append(argv) or spawn(argv, *a, **k))
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=args)
    assert r.status_code == status, r.text
    assert started == []


def test_a_memory_limit_the_interpreter_cannot_start_under_is_quoted_without_the_servers_folders() -> None:
    # 4 MiB of address space (under the quota's least, 64 MiB: a direct call) and the child's
    # interpreter does not start: the loader's line (`/.../bin/python: error while loading shared
    # libraries: ...`), or limitexec's (`/.../bin/python could not be run: ...`); quoted by its name
    from deepseek_enterprise.service import studycheck

    line = studycheck.study_refusal(["tune", "config.toml", *TUNE], KEY, {"space.toml": SPACE}, {}, 4 << 20,
                                    limits=cgroups.Detection(None, "--cgroup none"), tenant="acme")
    assert line is not None and line.startswith(f"tenant 'acme': memory-bytes {4 << 20} is too small "), line
    assert f"ran out of it ({Path(sys.executable).name}" in line and sys.executable not in line, line
    assert re.search(r"(^|[\s'\"(])/", line) is None, line


def test_a_tune_job_whose_study_folder_is_named_like_a_help_has_its_study_checked(svc: Deploy,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # `tune --out --help` runs the study in the folder `--help` (click takes it as --out's value):
    # its study is checked in a child (here a program refusing with the command line it was given)
    from deepseek_enterprise.service import studycheck

    echo = "import json, sys; print(json.dumps({'refused': ' '.join(sys.argv[1:])}))"
    monkeypatch.setattr(studycheck, "CHILD_ARGS", ("-I", "-c", echo))
    args = [*TUNE, "--out", "--help"]
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=args)
    assert (r.status_code, r.json()["detail"]) == (422, " ".join(["tune", "config.toml", *args]))


def test_a_memory_limit_torch_cannot_import_under_is_named_in_one_line(
        svc: Deploy, caplog: pytest.LogCaptureFixture) -> None:
    # under rlimits a child held to RLIMIT_AS 1.5 GiB fails at torch's import (it maps ~3.1 GB):
    # the job, held to the same limit by the local executor without cgroup v2, could not run either,
    # so it is refused with the tenant's memory-bytes and the fix, not torch's import error
    # ("model 'tiny' ... could not be loaded ... libtorch_cpu.so: failed to map segment")
    service = _service(svc)
    assert svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"memory_bytes": 3 << 29}).status_code == 200
    try:
        executor = LocalExecutor(svc.root, limits=cgroups.Detection(None, "--cgroup none"))
        service.scheduler = Scheduler(svc.store, executor, slots=1, gpus=[])
        r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        line = r.json()["detail"]
        assert r.status_code == 422 and line.startswith(f"tenant 'acme': memory-bytes {3 << 29} is too small "), r.text
        assert "(RLIMIT_AS; cgroup v2 not used: --cgroup none)" in line and "failed to map segment" in line
        assert "deepseek tenants quota acme --memory-bytes N" in line and "(--cgroup)" in line
        # the loader's message quoted without the server's folders (its interpreter's, torch's)
        assert re.search(r"(^|[\s'\"(])/", line) is None, line
        # where the jobs run elsewhere (no executor here; Slurm's: Executor.local_limits' default) the
        # limit held only the check, which could not run: the job checks its study when it runs
        service.scheduler = None
        r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        assert r.status_code == 201, r.text
        assert f"memory-bytes {3 << 29} is too small" in caplog.text
    finally:
        service.scheduler = None
        assert svc.call("PUT", "/v1/tenants/acme/quota", svc.admin, json={"memory_bytes": None}).status_code == 200


def test_the_study_check_reads_only_the_end_of_its_childs_output(svc: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    # the child's output went to the server's memory whole (communicate): a child printing 12 MiB
    # before its verdict cost three times that; now its last OUTPUT_TAIL bytes only (read_tail)
    import tracemalloc

    from deepseek_enterprise.service import studycheck

    loud = "import sys; sys.stdout.write('x' * (12 << 20)); print('\\n{\"refused\": \"the verdict\"}')"
    monkeypatch.setattr(studycheck, "CHILD_ARGS", ("-I", "-c", loud))  # this program in the child's place
    tracemalloc.start()
    try:
        r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (r.status_code, r.json()["detail"]) == (422, "the verdict")
    assert peak < 4 << 20, f"the submit held {peak >> 20} MiB reading the child's output"


def test_a_child_that_prints_past_the_bound_is_stopped_there(svc: Deploy, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    # its output files are measured while it runs: past OUTPUT_BYTES it is killed (no verdict, the
    # job checks its study when it runs), never left to fill the server's disk until its CPU limit
    from deepseek_enterprise.service import studycheck

    loud = ("import sys, time\nfor _ in range(256): sys.stdout.write('x' * (1 << 20)); time.sleep(0.01)\n"
            "print('\\n{\"refused\": \"the verdict\"}')")
    monkeypatch.setattr(studycheck, "CHILD_ARGS", ("-I", "-c", loud))
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=KEY, files={"space.toml": SPACE}, args=TUNE)
    assert r.status_code == 201, r.text
    assert f"gave no verdict (it wrote more than {studycheck.OUTPUT_BYTES} bytes of output" in caplog.text
