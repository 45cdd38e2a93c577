"""``bench latency`` and ``eval`` jobs their command would refuse before doing any work are refused
at submit (422, the command's own line), their ``--config`` / ``--against`` files read as the job
will find them (service.jobcheck); a compressor's options are checked at submit when it declares
that it loads without torch; a job holding a help option's name is accepted as a help only where
the command shows one (service.jobparse); and a submit imports no torch into the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _hosts import enterprise_host
from _servicehelpers import Deploy, submit_checks, two_tenants
from _submitlines import cli_line, job_line, run_in, workspace

from deepseek.errors import UsageError
from deepseek.hookspecs import hookimpl
from deepseek_enterprise.compress import LOADS_WITHOUT_TORCH
from deepseek_enterprise.compress.compressor import Compressor


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    yield from submit_checks(tmp_path_factory, study_check=False)  # not about the study check (test_service_submit_study.py)


def _refused_as_the_job(svc: Deploy, tmp_path: Path, command: str, config: str | None, files: dict[str, str],
                        args: list[str]) -> None:
    expected = job_line(tmp_path, command, config, files, args)
    job = {"command": command, "args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


CFG = "[train]\nmax_steps = 5\n"
SAVED = json.dumps({"info": {"model": "small"}, "rows": [{"name": "eager", "median_ms": 3.5}]})


@pytest.mark.parametrize(("config", "files", "args"), [
    (None, {}, ["--dtype", "float16"]),                                     # float16 on the CPU
    (None, {}, ["--dtype", "float16", "--device", "cpu"]),
    (CFG, {}, ["--config", "config.toml", "--mode", "decode"]),           # decode times a GPT's step, not a config's
    (None, {}, ["--model", "tinyy"]),                                       # no such model, with the did-you-mean
    (None, {}, ["--config", "cfg.toml"]),                                   # a config file the job is not sent
    (None, {"cfg.toml": "[train\n"}, ["--config", "cfg.toml"]),            # not TOML
    (None, {"cfg.toml": "[train]\nmax_stepz = 5\n"}, ["--config", "cfg.toml"]),  # the config's keys
    ("[trian]\n", {}, ["--config", "config.toml"]),                         # the job's own config.toml
    (None, {"cfg.toml": "[data]\nbatch_size = 0\n"}, ["--config", "./cfg.toml"]),
    (None, {}, ["--against", "saved.json"]),                                # a baseline the job is not sent
    (None, {"saved.json": "{nope"}, ["--against", "saved.json"]),          # not JSON
    (None, {"saved.json": "{}"}, ["--against", "saved.json"]),             # not a bench latency result
    (None, {"saved.json": json.dumps({"info": {}, "rows": []})}, ["--against", "saved.json"]),
    (None, {}, ["--only", "torch.compil"]),                                 # a variant, with the did-you-mean
    (None, {}, ["--only", "deepseek static-cache"]),                        # decode's variant in forward mode
    (None, {}, ["--only", "deepseek.optimize int8"]),                       # --reduced's variant without it
    (None, {}, ["--mode", "decode", "--only", "deepseek static-cache graph"]),  # the CUDA one on the CPU
])
def test_a_bench_latency_job_is_refused_at_submit_with_the_commands_own_line(
        svc: Deploy, tmp_path: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    _refused_as_the_job(svc, tmp_path, "bench", config, files, ["latency", *args])


@pytest.mark.parametrize(("config", "files", "args"), [
    (None, {}, ["--dtype", "float16", "--device", "cuda"]),                 # the job's GPU, not the server's
    (None, {}, ["--mode", "decode", "--model", "tiny", "--dtype", "bfloat16"]),
    (CFG, {}, ["--config", "config.toml"]),
    (None, {"cfg.toml": CFG}, ["--config", "cfg.toml", "--batch", "2"]),
    (None, {}, ["--config", "{tenant}/data/cfg.toml"]),                     # may be written before the job starts
    (None, {"saved.json": SAVED}, ["--against", "saved.json", "--model", "small"]),
    (None, {}, ["--against", "{tenant}/data/saved.json"]),
    (None, {}, ["--only", "torch.compile+freezing,deepseek.optimize"]),
    (None, {}, ["--mode", "decode", "--model", "tiny", "--reduced", "--only",
                "deepseek static-cache,deepseek.optimize int8"]),
    (None, {}, ["--device", "cuda:1", "--mode", "decode", "--only", "deepseek static-cache graph"]),
    (None, {}, ["--device", "cuda", "--only", "torch.compile reduce-overhead"]),
])
def test_a_valid_bench_latency_job_or_one_reading_what_submit_cannot_see_is_accepted(
        svc: Deploy, config: str | None, files: dict[str, str], args: list[str]) -> None:
    args = [a.replace("{tenant}", str(svc.root / "tenants" / "acme")) for a in args]
    job = {"command": "bench", "args": ["latency", *args], "files": files,
           **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of a tiny model trained 2 steps: eval reads its weights before its --config."""
    work = tmp_path_factory.mktemp("trained")
    (work / "c.toml").write_text(
        '[model]\nname = "tiny"\nd_model = 16\nn_heads = 2\nn_layers = 1\nmax_seq_len = 16\nd_ff = 32\n'
        "[data]\nseq_len = 16\nbatch_size = 4\neval_batches = 1\n[train]\nmax_steps = 2\neval_interval = 0\n"
        '[strategy]\nname = "single"\ndevice = "cpu"\n[logging]\nplot = false\nprogress = false\n')
    code, _, err = run_in(work, ["train", "c.toml", "--run-dir", "run", "--quiet"])
    assert code == 0, err
    return work / "run"


EVAL = ["--checkpoint", "runs/a"]


@pytest.mark.parametrize(("config", "files", "args"), [
    (None, {}, ["--config", "cfg.toml"]),                                   # a config file the job is not sent
    (None, {"cfg.toml": "[data\n"}, ["--config", "cfg.toml"]),             # not TOML
    (None, {}, ["--set", "train.lr=1"]),                                    # eval takes data.KEY=VALUE only
    (None, {"cfg.toml": "[data]\nbatch_size = 0\n"}, ["--config", "cfg.toml"]),  # the [data] keys datasets share
    (None, {"cfg.toml": "[data]\neval_batches = -1\n"}, ["--config", "cfg.toml"]),
    (None, {"cfg.toml": "[data]\nseq_len = 16\n"}, ["--config", "cfg.toml", "--set", "data.batch_size=\"x\""]),
    ("[data]\nbatch_size = 0\n", {}, ["--config", "config.toml"]),          # the job's own config.toml
])
def test_an_eval_jobs_config_and_set_are_checked_at_submit_with_evals_line(
        svc: Deploy, tmp_path: Path, trained: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    # the job reads its weights first: the workspace holds them, so the line is what the config gives
    shutil.copytree(trained, workspace(tmp_path, config, files) / "runs" / "a")
    _refused_as_the_job(svc, tmp_path, "eval", config, files, [*EVAL, *args])


@pytest.mark.parametrize(("config", "files", "args"), [
    (None, {"cfg.toml": "[data]\npath = \"corpus.txt\"\n"}, ["--config", "cfg.toml"]),     # a dataset's own keys: at run
    (None, {}, ["--set", "data.batch_size=0"]),                 # over the weights' own [data]: read when it runs
    (None, {}, ["--config", "{tenant}/data/cfg.toml"]),
    ("[data]\nbatch_size = 2\n", {}, ["--config", "config.toml", "--set", "data.eval_batches=1"]),
])
def test_a_valid_eval_job_or_one_reading_what_submit_cannot_see_is_accepted(
        svc: Deploy, config: str | None, files: dict[str, str], args: list[str]) -> None:
    args = [a.replace("{tenant}", str(svc.root / "tenants" / "acme")) for a in args]
    job = {"command": "eval", "args": [*EVAL, *args], "files": files,
           **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 201, r.text


def test_an_eval_config_section_eval_does_not_read_is_not_refused_at_submit(
        svc: Deploy, tmp_path: Path, trained: Path) -> None:
    # eval takes [data] (and [model]) from its --config: the job succeeds, so submit must not refuse it
    files = {"cfg.toml": "[data]\nbatch_size = 2\nseq_len = 16\n[trian]\nlr = 1\n"}
    args = [*EVAL, "--config", "cfg.toml", "--batches", "1", "--device", "cpu"]
    shutil.copytree(trained, workspace(tmp_path, None, files) / "runs" / "a")
    code, _, err = run_in(tmp_path / "ws", ["eval", *args])
    assert code == 0, err
    assert svc.submit("acme", svc.tokens["bob"], command="eval", args=args, files=files).status_code == 201


@dataclass(frozen=True)
class _KeepOptions:
    keep: int = field(default=1, metadata={"check": lambda v: None if v > 0 else "must be a positive whole number"})


class _Keep(Compressor):
    """A third-party compressor (its options checked; never run here)."""

    Options = _KeepOptions

    def compress(self, model, config, calibration):  # type: ignore[no-untyped-def]  # noqa: ANN001
        raise AssertionError("not run in these tests")


class _AcmeCompressors:
    """deepseek-acme: ``acme.light`` declares that it loads without torch, ``acme.heavy`` does not."""

    @hookimpl
    def deepseek_register_compressors(self, register) -> None:  # type: ignore[no-untyped-def]  # noqa: ANN001
        register("acme.light", f"{__name__}:_Keep", declares={LOADS_WITHOUT_TORCH: True})
        register("acme.heavy", f"{__name__}:_Keep")


def test_a_compressors_options_are_checked_at_submit_when_it_declares_it_loads_without_torch(tmp_path: Path) -> None:
    host = enterprise_host((_AcmeCompressors(), "deepseek-acme"))
    d = two_tenants(tmp_path / "srv", host)
    try:
        for name in ("acme.light", "acme.heavy"):  # the job refuses both
            args = [*EVAL, "--method", name, "--set", "keep=0", "--out", "runs/c"]
            expected = cli_line(tmp_path, ["compress", *args], host)
            assert expected == f"--set ({name}).keep: must be a positive whole number, got 0 (int)", expected
            r = d.submit("acme", d.tokens["bob"], command="compress", args=args)
            # only the one that declares it is loaded by the server: the other is checked when the job runs
            assert (r.status_code, r.json().get("detail")) == ((422, expected) if name == "acme.light" else (201, None))
        # a recipe with an undeclared compressor: where its recover step stands is the job's to check
        args = [*EVAL, "--max-drop", "1%", "--recipe", "acme.heavy + quantize.int8 + recover", "--out", "runs/c"]
        assert cli_line(tmp_path, ["compress", *args], host).startswith("--recipe 'acme.heavy + quantize.int8 + "
                                                                        "recover': recover follows a quantization")
        assert d.submit("acme", d.tokens["bob"], command="compress", args=args).status_code == 201
        args[args.index("acme.heavy + quantize.int8 + recover")] = "acme.light + quantize.int8 + recover"
        assert d.submit("acme", d.tokens["bob"], command="compress", args=args).json()["detail"] == cli_line(
            tmp_path, ["compress", *args], host)
        # an undeclared compressor is still found by name at submit
        r = d.submit("acme", d.tokens["bob"], command="compress", args=[*EVAL, "--method", "acme.hevy", "--out", "c"])
        assert r.status_code == 422 and r.json()["detail"].startswith("unknown compressor 'acme.hevy'; did you mean")
    finally:
        d.close()


@pytest.mark.parametrize("name", [c.name for c in enterprise_host().components("compressor")
                                  if c.declared(LOADS_WITHOUT_TORCH) is True])
def test_a_compressor_that_declares_it_loads_without_torch_does(name: str) -> None:
    # what lets the server load it at submit: its module imports no torch
    target = enterprise_host().resolve("compressor", name).target_text
    code = (f"import sys, importlib; importlib.import_module({target.partition(':')[0]!r}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


SUBMITS = """
import json, sys
from pathlib import Path
from _servicehelpers import two_tenants
d = two_tenants(Path(sys.argv[1]))
codes = []
for command, args, files, config in json.loads(sys.argv[2]):
    r = d.submit("acme", d.tokens["bob"], command=command, args=args, files=files, **({"config": config} if config else {}))
    codes.append(r.status_code)
d.close()
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules}))
"""


DS = '[strategy]\nname = "deepspeed"\nconfig_path = "ds.json"\n'


LONG = "n" * 300
"""A name longer than the 255 bytes a file system takes."""


def test_a_path_with_a_name_too_long_is_refused_at_submit_with_the_commands_line(svc: Deploy, tmp_path: Path) -> None:
    """A path the job's command takes (a PATH option or argument) holding a name over 255 bytes was
    accepted and the job failed when it ran; an absolute one in the tenant's folder was a 500
    (Path.is_symlink raised ENAMETOOLONG in the symlink walk). The CLI's own line (deepseek.paths.name_too_long)."""
    tenant = svc.root / "tenants" / "acme"
    tenant.mkdir(parents=True, exist_ok=True)
    for args in (["--run-dir", LONG], ["--run-dir", f"runs/{LONG}"], ["--run-dir", f"{tenant}/{LONG}/run"]):
        _refused_as_the_job(svc, tmp_path, "train", None, {}, args)
    out = f"c/{LONG}"  # enterprise's path type (a pathlib.Path), core's wording clipped as the CLI clips it
    r = svc.submit("acme", svc.tokens["bob"], command="compress", args=[*EVAL, "--method", "prune.ffn", "--out", out])
    assert (r.status_code, r.json()["detail"]) == (422, str(UsageError(
        f"--out: {out} cannot be used (File name too long: '{'n' * 40}...' is 300 bytes, a name may have 255); "
        "give another path")))


def test_a_submit_imports_no_torch_into_the_server(tmp_path: Path) -> None:
    space = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'
    jobs = [
        ("train", ["--max-steps", "3", "--precision", "fp32"], {}, CFG),
        ("train", ["--set", "train.max_stepz=3"], {}, None),
        ("eval", [*EVAL, "--config", "cfg.toml", "--device", "cuda:1"], {"cfg.toml": "[data]\nbatch_size = 2\n"}, None),
        ("eval", [*EVAL, "--config", "cfg.toml"], {"cfg.toml": "[data]\nbatch_size = 0\n"}, None),
        ("bench", ["latency", "--model", "tiny", "--mode", "decode"], {}, None),
        ("bench", ["latency", "--config", "config.toml", "--against", "saved.json"], {"saved.json": SAVED}, CFG),
        ("bench", ["latency", "--dtype", "float16"], {}, None),
        ("tune", ["--study", "s", "--space", "space.toml", "--trials", "2", "--out", "st"], {"space.toml": space}, CFG),
        ("compress", [*EVAL, "--method", "prune.ffn", "--set", "ratio=0.5", "--out", "runs/c"], {}, None),
        ("compress", [*EVAL, "--max-drop", "1%", "--recipe", "prune.ffn ratio=0.5 + quantize.int8", "--out", "c"], {},
         None),
        ("compress", [*EVAL, "--method", "quantize.int8", "--set", "skip=[]", "--out", "c"], {}, None),
        ("compress", [*EVAL, "--max-drop", "1%", "--recipe", "prune.ffn ratio=2 + recover", "--out", "c"], {}, None),
        ("compress", [*EVAL, "--method", "quantize.int4-weight", "--set", "group_size=7", "--out", "c"], {}, None),
        ("compress", [*EVAL, "--method", "distill.student", "--set", "alpha=1", "--out", "c"], {}, None),
        # torch.optim's classes are listed by a child process: the server still holds no torch
        ("train", [], {"ds.json": '{"optimizer": {"type": "Sgd"}}'}, DS),
        ("train", [], {"ds.json": '{"scheduler": {}}'}, DS),
        ("train", ["--run-dir", f"runs/{LONG}"], {}, None),  # a name too long (deepseek.paths.name_too_long)
    ]
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", SUBMITS, str(tmp_path / "srv"), json.dumps(jobs)], cwd=here,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"codes": [201, 422, 201, 422, 201, 201, 422, 201, 201, 201, 201, 422, 422, 422, 422, 422, 422], "torch": False}


def test_the_bench_latency_command_still_refuses_what_the_submit_check_shares_with_it(tmp_path: Path) -> None:
    # the rule lives once (deepseek.cli.bench_cmd.latency_arguments): the command runs it too
    assert cli_line(tmp_path, ["bench", "latency", "--dtype", "float16"]) == (
        "--dtype float16 is for GPUs; use float32 or bfloat16 on CPU")
    assert cli_line(tmp_path, ["bench", "latency", "--model", "tinyy"]).startswith(
        "unknown model 'tinyy'; did you mean 'tiny'?")


BAD = "[train]\nmax_stepz = 5\n"
TUNE_SPACE = {"space.toml": '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'}


@pytest.mark.parametrize(("command", "config", "files", "args"), [
    # a help option's name as an option's value: the job runs (study folder '--help') and refuses its config
    ("tune", BAD, TUNE_SPACE, ["--study", "s", "--out", "--help", "--space", "space.toml", "--trials", "4"]),
    ("tune", BAD, TUNE_SPACE, ["--study", "--help", "--space", "space.toml", "--trials", "4"]),  # tune's name rule
    ("tune", BAD, TUNE_SPACE, ["--study", "-h", "--space", "space.toml", "--trials", "4"]),
    ("train", None, {}, ["--max-steps", "--help"]),        # the value of the wrong type
    ("train", None, {}, ["--", "--help"]),                 # after `--`: train's CONFIG, not a file the job has
    ("train", None, {}, ["--bogus", "--help"]),            # an unknown option: click refuses it before any help
    ("bench", None, {}, ["latency", "--runs", "--help"]),
])
def test_a_help_option_name_where_the_command_shows_no_help_is_checked(
        svc: Deploy, tmp_path: Path, command: str, config: str | None, files: dict[str, str], args: list[str]) -> None:
    # every check was skipped (201) for a job holding `--help` or `-h` anywhere after its command
    _refused_as_the_job(svc, tmp_path, command, config, files, args)


def test_a_config_refused_with_a_help_as_the_study_folder_is_refused_as_with_any_folder(svc: Deploy) -> None:
    got = [svc.submit("acme", svc.tokens["bob"], command="tune", config=BAD, files=TUNE_SPACE,
                      args=["--study", "s", "--out", out, "--space", "space.toml", "--trials", "4"])
           for out in ("st", "--help")]
    line = got[0].json()["detail"]
    assert line.startswith("train.max_stepz: unknown key"), line
    assert [(r.status_code, r.json()["detail"]) for r in got] == [(422, line)] * 2


@pytest.mark.parametrize(("command", "args"), [
    ("tune", ["--help"]),
    ("tune", ["--study", "s", "-h"]),
    ("bench", ["--help"]),
    ("bench", []),                                        # a group given no sub-command prints its help
    ("bench", ["latency", "--runs", "many", "--help"]),   # the help option is eager: shown before --runs' type
    ("train", ["--set", "x", "--help"]),
])
def test_a_help_is_accepted_where_the_command_shows_one_and_the_server_prints_nothing(
        svc: Deploy, tmp_path: Path, capfd: pytest.CaptureFixture[str], command: str, args: list[str]) -> None:
    code, out, _ = run_in(tmp_path, [command, *args])
    assert code == 0 and out.startswith("Usage: deepseek "), out  # the command prints its help and succeeds
    capfd.readouterr()
    r = svc.submit("acme", svc.tokens["bob"], command=command, args=args)
    assert r.status_code == 201, r.text
    assert capfd.readouterr() == ("", "")  # the help the check found is not printed on the server's outputs
