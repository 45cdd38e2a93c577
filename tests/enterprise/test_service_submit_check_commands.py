"""``bench latency`` jobs their command would refuse before doing any work are refused
at submit (422, the command's own line), their ``--config`` / ``--against`` files read as the job
will find them (service.jobcheck); and a submit imports no torch into the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _servicehelpers import Deploy, two_tenants
from _submitlines import cli_line, job_line


@pytest.fixture
def svc(tmp_path: Path) -> Deploy:
    d = two_tenants(tmp_path / "srv")
    yield d
    d.close()


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
])
def test_a_valid_bench_latency_job_or_one_reading_what_submit_cannot_see_is_accepted(
        svc: Deploy, config: str | None, files: dict[str, str], args: list[str]) -> None:
    args = [a.replace("{tenant}", str(svc.root / "tenants" / "acme")) for a in args]
    job = {"command": "bench", "args": ["latency", *args], "files": files,
           **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 201, r.text


EVAL = ["--checkpoint", "runs/a"]


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


def test_a_submit_imports_no_torch_into_the_server(tmp_path: Path) -> None:
    space = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'
    jobs = [
        ("train", ["--max-steps", "3", "--precision", "fp32"], {}, CFG),
        ("train", ["--set", "train.max_stepz=3"], {}, None),
        ("eval", [*EVAL, "--config", "cfg.toml", "--device", "cuda:1"], {"cfg.toml": "[data]\nbatch_size = 2\n"}, None),
        ("bench", ["latency", "--model", "tiny", "--mode", "decode"], {}, None),
        ("bench", ["latency", "--config", "config.toml", "--against", "saved.json"], {"saved.json": SAVED}, CFG),
        ("bench", ["latency", "--dtype", "float16"], {}, None),
        ("tune", ["--study", "s", "--space", "space.toml", "--trials", "2", "--out", "st"], {"space.toml": space}, CFG),
        ("compress", [*EVAL, "--method", "prune.ffn", "--set", "ratio=0.5", "--out", "runs/c"], {}, None),
        ("compress", [*EVAL, "--max-drop", "1%", "--recipe", "prune.ffn ratio=0.5 + quantize.int8", "--out", "c"], {},
         None),
    ]
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-c", SUBMITS, str(tmp_path / "srv"), json.dumps(jobs)], cwd=here,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"codes": [201, 422, 201, 201, 201, 422, 201, 201, 201], "torch": False}


def test_the_bench_latency_command_still_refuses_what_the_submit_check_shares_with_it(tmp_path: Path) -> None:
    # the rule lives once (deepseek.cli.bench_cmd.latency_arguments): the command runs it too
    assert cli_line(tmp_path, ["bench", "latency", "--dtype", "float16"]) == (
        "--dtype float16 is for GPUs; use float32 or bfloat16 on CPU")
    assert cli_line(tmp_path, ["bench", "latency", "--model", "tinyy"]).startswith(
        "unknown model 'tinyy'; did you mean 'tiny'?")
