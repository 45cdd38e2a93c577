"""A job whose command line or config its command would refuse is refused at submit (422, the
command's own line), not queued to fail with exit code 2 (service.jobcheck)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from _hosts import registering
from _servicehelpers import Deploy, run_cli, submit_checks, two_tenants
from _servicelive import live
from _submitlines import cli_line as _line
from _submitlines import job_line as _job_line
from _submitlines import run_in as _run
from sqlalchemy import text

from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    yield from submit_checks(tmp_path_factory, study_check=False)  # not about the study check (test_service_submit_study.py)


def _train_line(tmp_path: Path, config: str | None, args: list[str]) -> str:
    """The one line ``deepseek train`` itself prints for this command line (exit code 2)."""
    argv = ["train"]
    if config is not None:
        (tmp_path / "config.toml").write_text(config)
        argv.append(str(tmp_path / "config.toml"))
    code, _, err = _run(tmp_path, [*argv, *args])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(("config", "args"), [
    ("[train]\nmax_stepz = 5\n", []),                         # an unknown key, with its did-you-mean
    ("[train]\nmax_steps = -5\n", []),                        # a range
    ("[train]\nlr = \"fast\"\n", []),                         # a type
    ("[trian]\nlr = 1e-3\n", []),                             # an unknown section
    (None, ["--max-steps", "-3"]),                            # an option's value, by the config's rule
    (None, ["--max-steps", "many"]),                          # click's type
    (None, ["--bogus"]),                                      # an option train does not have
    (None, ["--plugins", "pro"]),                             # a root option: the CLI's hint too
    (None, ["--set", "train.warmup_stepz=3"]),                # a --set of an unknown key
    (None, ["--max-steps", "5", "--set", "train.max_steps=6"]),  # both set one key
    ("[train]\nmax_steps = 10\n", ["--set", "train.max_steps=0"]),  # the override, over the config's value
    (None, ["--set", "train.min_lr=0.5"]),                    # a cross-field check (above the default lr)
])
def test_an_invalid_train_job_is_refused_at_submit_with_the_train_commands_line(
        svc: Deploy, tmp_path: Path, config: str | None, args: list[str]) -> None:
    expected = _train_line(tmp_path, config, args)
    job = {"args": args, **({"config": config} if config is not None else {})}
    with svc.store.session() as s:  # the module's server: its earlier tests' jobs and audit rows
        jobs, last = s.scalar(text("select count(*) from jobs")), s.scalar(text("select max(id) from audit"))
    assert svc.submit("acme", svc.tokens["vic"], **job).status_code == 403  # the role first, as before
    assert svc.submit("globex", svc.tokens["bob"], **job).status_code == 404  # not bob's tenant: said as before
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)
    with svc.store.session() as s:
        assert s.scalar(text("select count(*) from jobs")) == jobs
        results = s.scalars(text("select result from audit where action = 'job.submit' and id > :last order by id"),
                            {"last": last}).all()
        assert [r.split(":")[0] for r in results] == ["refused 403", "refused 404", "refused 422"]
        assert results[2] == f"refused 422: {expected}"


@pytest.mark.parametrize(("config", "args"), [
    ("[train]\nmax_steps = 5\n", ["--run-dir", "runs/a"]),
    # files of the workspace are not read at submit: the data file comes with the job
    ("[data]\npath = \"corpus.txt\"\n[train]\nmax_steps = 3\n", []),
    # a component's keys are its own (checked when the job runs, where its files are)
    ("[model]\nname = \"tiny\"\nd_model = 32\n", ["--strategy", "single", "--precision", "fp32"]),
    (None, ["--resume", "runs/a"]),  # the checkpoint's config: checked when it runs
    (None, ["--help"]),
    (None, ["-h"]),
    # a config among the job's files: min_lr 0.5 is above the default lr, not above the file's
    (None, ["cfg.txt", "--set", "train.min_lr=0.5"]),
    (None, ["--debug", "--max-steps", "3"]),  # deepseek's own --debug, taken anywhere before a `--`
])
def test_a_valid_train_job_is_accepted(svc: Deploy, config: str | None, args: list[str]) -> None:
    job = {"args": args, **({"config": config} if config is not None else {})}
    if "corpus.txt" in (config or ""):
        job["files"] = {"corpus.txt": "hello\n"}
    if "cfg.txt" in args:
        job["files"] = {"cfg.txt": "[train]\nlr = 1.0\n"}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert r.status_code == 201, r.text


def test_other_commands_are_parsed_by_their_own_command(svc: Deploy, tmp_path: Path) -> None:
    expected = _run(tmp_path, ["eval", "--batches", "2"])[2].strip().removeprefix("error: ")
    assert "--checkpoint" in expected
    r = svc.submit("acme", svc.tokens["bob"], command="eval", args=["--batches", "2"])
    assert (r.status_code, r.json()["detail"]) == (422, expected)
    assert svc.submit("acme", svc.tokens["bob"], command="eval", args=["--checkpoint", "runs/a"]).status_code == 201


def test_the_cli_prints_the_refusal_and_exits_2(svc: Deploy, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("[train]\nmax_stepz = 5\n")
    with live(svc) as server:
        code, out, err = run_cli("jobs", "submit", "--tenant", "acme", "--config", str(cfg), "train",
                                 token=svc.tokens["bob"], url=server.url)
        assert (code, out) == (2, "")
        assert err.strip().splitlines() == [f"error: {server.url}: 422: {_train_line(tmp_path, cfg.read_text(), [])}"]


@pytest.mark.parametrize("args", [
    ["nope"],                          # a sub-command the group does not have
    ["latenc"],                        # ... with click's did-you-mean
    ["latency", "--bogus"],            # an option the sub-command does not have
    ["latency", "--runs", "many"],     # the sub-command's option type
    ["latency", "--dtype", "int3"],    # ... a choice
    ["train", "--bogus"],              # a sub-command the group loads when asked (bench train)
    ["--x"],                           # the group's own options, as before
])
def test_a_group_commands_job_is_parsed_down_to_its_sub_command(svc: Deploy, tmp_path: Path, args: list[str]) -> None:
    expected = _line(tmp_path, ["bench", *args])
    r = svc.submit("acme", svc.tokens["bob"], command="bench", args=args)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


def test_a_group_commands_valid_job_is_accepted(svc: Deploy, tmp_path: Path) -> None:
    assert _run(tmp_path, ["bench"])[0] == 0  # a group given no sub-command prints its help and succeeds
    for args in ([], ["latency", "--runs", "25", "--dtype", "bfloat16"], ["latency", "--help"], ["train", "-h"]):
        r = svc.submit("acme", svc.tokens["bob"], command="bench", args=args)
        assert r.status_code == 201, (args, r.text)


def test_a_command_whose_plugin_code_does_not_load_is_refused_with_the_clis_line(tmp_path: Path) -> None:
    # A third-party distribution preferred for `compress`, whose command's module is missing
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands", {"compress": "acme_absent_module.cli:compress"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    expected = _line(tmp_path, ["compress", "--checkpoint", "runs/a"], host, code=1)
    assert expected.startswith("command 'compress' from deepseek-acme 1.0 could not be loaded"), expected
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="compress", args=["--checkpoint", "runs/a"])
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


def test_a_command_of_a_disabled_edition_is_refused_with_the_clis_line(tmp_path: Path) -> None:
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro"})))
    expected = _line(tmp_path, ["tune", "cfg.toml"], host)
    assert "deepseek-enterprise" in expected and "disabled" in expected, expected
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="tune", args=["cfg.toml"])
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


def test_a_device_is_checked_by_name_at_submit_not_against_the_servers_devices(svc: Deploy, tmp_path: Path) -> None:
    # The job runs with its own devices (CUDA_VISIBLE_DEVICES, or a Slurm node): the server's do not decide
    here = _line(tmp_path, ["eval", "--checkpoint", "runs/a", "--device", "cuda:7"])
    assert "cuda:7" in here  # this machine has no such device, so the CLI here refuses it
    for args in (["eval", "--checkpoint", "runs/a", "--device", "cuda:7"], ["bench", "latency", "--device", "cuda"]):
        r = svc.submit("acme", svc.tokens["bob"], command=args[0], args=args[1:])
        assert r.status_code == 201, r.text
    expected = _line(tmp_path, ["eval", "--checkpoint", "runs/a", "--device", "gpu"])  # not a device name anywhere
    r = svc.submit("acme", svc.tokens["bob"], command="eval", args=["--checkpoint", "runs/a", "--device", "gpu"])
    assert (r.status_code, r.json()["detail"]) == (422, expected)


SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2, log = true }\n'
TUNE = ["--study", "s", "--space", "space.toml", "--trials", "4"]


@pytest.mark.parametrize(("config", "files", "args"), [
    ("", {"space.toml": SPACE}, ["--study", "a b", *TUNE[2:]]),                   # the study's name
    ("", {"space.toml": SPACE}, [*TUNE, "--objective", "val-loss"]),              # the objective's form
    ("", {"space.toml": SPACE}, [*TUNE, "--tuner", "trainng"]),                   # a tuner no plugin registers
    ("", {"space.toml": SPACE}, [*TUNE, "--objective", "tokens_per_s", "--tuner", "training"]),  # it does not measure it
    ("", {}, TUNE),                                                               # the space file is not sent
    ("", {"space.toml": SPACE}, ["--study", "s", "--space", "sub/space.toml", "--trials", "4"]),  # not where it is put
    ("", {"space.toml": "[space]\nlr = 1\n"}, TUNE),                              # the space file's own rules
    ("", {"space.toml": '[space]\n"train.lr" = { type = "float", low = 1, high = 0 }\n'}, TUNE),
    ("", {"space.toml": "[spaec]\n"}, TUNE),                                      # ... with the did-you-mean
    ("", {"space.toml": "[space\n"}, TUNE),                                       # not TOML
    ("", {"space.toml": SPACE + "[tuner]\ntrial_timeout = 5\n"}, TUNE),           # the tuner's options
    ("[train]\nmax_stepz = 5\n", {"space.toml": SPACE}, TUNE),                    # the base config's keys
    (None, {"space.toml": SPACE}, ["cfg.toml", *TUNE]),                           # CONFIG.toml is not sent
    (None, {"space.toml": SPACE, "cfg.toml": "[train\n"}, ["cfg.toml", *TUNE]),   # a config among its files
    (None, {"space.toml": SPACE, "cfg.toml": "[trian]\n"}, ["cfg.toml", *TUNE]),
    # with its own study folder or storage too: the job checks the base config after the folder, whatever it holds
    ("[train]\nmax_stepz = 5\n", {"space.toml": SPACE}, [*TUNE, "--out", "studies/s"]),
    ("[train]\nmax_stepz = 5\n", {"space.toml": SPACE}, [*TUNE, "--storage", "journal:s.log"]),
    ("[precision]\nmaster_weights = true\ndtype = \"fp16\"\n", {"space.toml": SPACE}, [*TUNE, "--out", "studies/s"]),
])
def test_an_invalid_tune_job_is_refused_at_submit_with_the_tune_commands_line(
        svc: Deploy, tmp_path: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    expected = _job_line(tmp_path, "tune", config, files, args)
    job = {"args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], command="tune", **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


@pytest.mark.parametrize("space", [
    '"train.warmup_stepz" = { type = "int", low = 0, high = 10 }',            # a key the config does not have
    '"train.min_lr" = { type = "float", low = 1e-6, high = 0.5 }',            # its upper bound above train.lr
    '"train.grad_accum" = { type = "int", low = 0, high = 4 }',               # its lower bound out of range
    '"precision.dtype" = { type = "categorical", choices = ["auto", "fp8x"] }',  # a choice that is no dtype
    '"strategy.name" = { type = "categorical", choices = ["single", "dpp"] }',   # a strategy no plugin registers
])
def test_a_tune_jobs_trial_configs_are_checked_at_submit_naming_the_space_entry(
        svc: Deploy, tmp_path: Path, space: str) -> None:
    # the base config is valid: the study refuses the space's bounds / choices before its first
    # trial, and the job used to be queued to fail so
    files = {"space.toml": SPACE + space + "\n"}
    expected = _job_line(tmp_path, "tune", "", files, TUNE)
    assert expected.startswith("space.toml: space.'"), expected
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config="", files=files, args=TUNE)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


@pytest.mark.parametrize(("config", "space"), [
    ("[data]\nbatch_size = 4\n", '"data.batch_size" = { choices = [8, 16] }'),          # a shared key, as given
    ("", '"train.grad_accum" = { choices = [2, 4] }'),                                     # a default
    ("[train]\nlr = 1\n", '"train.lr" = { choices = [0.5, 2.0] }'),                      # 1 is read as 1.0
    ("", '"strategy.name" = { choices = ["ddp", "deepspeed"] }'),                         # the default component
    ("[optimizer]\nname = \"sgd\"\n", '"optimizer.name" = { choices = ["adamw", "lion"] }'),
])
def test_a_base_value_not_among_a_categoricals_choices_is_refused_at_submit(
        svc: Deploy, tmp_path: Path, config: str, space: str) -> None:
    """The baseline trial takes the base config's values, which a categorical entry must offer: the
    study refuses it before its first trial, and the job used to be queued to fail so."""
    files = {"space.toml": f"[space]\n{space}\n"}
    expected = _job_line(tmp_path, "tune", config, files, TUNE)
    assert "the baseline trial (the base config's own values) can take only a choice" in expected, expected
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=config, files=files, args=TUNE)
    assert (r.status_code, r.json()["detail"]) == (422, expected)
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=config, files=files, args=[*TUNE, "--no-baseline"])
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("config", "files", "args"), [
    ("[train]\nmax_steps = 5\n", {"space.toml": SPACE}, TUNE),
    (None, {"space.toml": SPACE, "cfg.toml": "[train]\nmax_steps = 5\n"}, ["cfg.toml", *TUNE]),
    ("", {"space.toml": SPACE}, ["--study", "s", "--space", "./space.toml", "--trials", "4"]),
    # a file of the tenant's folder may be written before the job starts: read when it runs
    ("", {}, ["--study", "s", "--space", "{tenant}/data/space.toml", "--trials", "4"]),
    # with its own --out or --storage: the folder (new in the workspace) is read when the job runs
    ("[train]\nmax_steps = 5\n", {"space.toml": SPACE}, [*TUNE, "--out", "studies/s"]),
    ("[train]\nmax_steps = 5\n", {"space.toml": SPACE}, [*TUNE, "--storage", "journal:s.log"]),
    # the base config's value among the choices, as the loader reads it (1 is 1.0)
    ("[train]\nlr = 1\n", {"space.toml": SPACE.replace('"train.lr"', '"train.min_lr"') + '"train.lr" = { choices = [1.0, 0.5] }\n'},
     TUNE),
    ("", {"space.toml": SPACE + '"strategy.name" = { choices = ["single", "ddp"] }\n'}, TUNE),
])
def test_a_valid_tune_job_or_one_reading_what_submit_cannot_see_is_accepted(
        svc: Deploy, config: str | None, files: dict[str, str], args: list[str]) -> None:
    tenant = svc.root / "tenants" / "acme"
    args = [a.replace("{tenant}", str(tenant)) for a in args]
    job = {"args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], command="tune", **job)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("config", "files", "args"), [
    (None, {}, ["cfg.toml"]),                                            # a config file the job is not sent
    (None, {"cfg.txt": "[train]\nmax_stepz = 5\n"}, ["cfg.txt"]),       # a config among its files: its keys
    (None, {"cfg.txt": "[train]\nlr = 1.0\n"}, ["cfg.txt", "--set", "train.min_lr=2.0"]),  # ... with the options
    (None, {"cfg.toml": "[train\n"}, ["cfg.toml"]),                     # ... not TOML
    ("[train\n", {}, []),                                               # the job's own config.toml, not TOML
    ("{\"train\": {}}\n", {}, []),                                       # ... JSON, with the CLI's hint
])
def test_a_train_jobs_config_file_is_read_as_the_job_will_read_it(
        svc: Deploy, tmp_path: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    expected = _job_line(tmp_path, "train", config, files, args)
    job = {"args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


@click.command("train")
@click.option("--steps", type=int, default=1)
def _acme_train(steps: int) -> None:
    """A third-party distribution's own ``train`` (preferred on the server below)."""


def test_a_plugins_own_command_of_a_job_name_is_parsed_by_itself_only(tmp_path: Path) -> None:
    # train's config checks belong to core's train: they are not run on another command of that name
    host = PluginHost(PluginSettings(allow=frozenset({"deepseek-pro", "deepseek-enterprise"}),
                                     prefer=("deepseek-acme",)))
    plugin = registering("deepseek_register_commands", {"train": "test_service_submit_check:_acme_train"})
    assert host.register_plugin(plugin, dist="deepseek-acme", version="1.0").status == "ok"
    expected = _line(tmp_path, ["train", "--steps", "x"], host)
    d = two_tenants(tmp_path / "srv", host, study_check=False)
    try:
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--steps", "3"])
        assert r.status_code == 201, r.text  # was an internal error (500): core train's checks read its params
        r = d.submit("acme", d.tokens["bob"], command="train", args=["--steps", "x"])
        assert (r.status_code, r.json()["detail"]) == (422, expected)
    finally:
        d.close()


@pytest.mark.parametrize("args", [
    ["--out", "runs/c"],                                                   # neither --method nor --max-drop
    ["--method", "prune.ffn", "--max-drop", "1%", "--out", "runs/c"],      # both
    ["--max-drop", "a lot", "--out", "runs/c"],                            # the budget's form
    ["--max-drop", "1%", "--set", "ratio=0.5", "--out", "runs/c"],         # --set belongs to --method
    ["--method", "prune.ffn", "--prefer", "size", "--out", "runs/c"],      # --prefer belongs to a search
    ["--max-drop", "1%", "--prefer", "latency", "--latency-runs", "0", "--out", "runs/c"],
    ["--method", "prune.ffn", "--recovery-steps", "5", "--out", "runs/c"],
    ["--method", "prune.ffn", "--recipe", "prune.ffn", "--out", "runs/c"],  # --recipe belongs to a search
    ["--max-drop", "1%", "--recipe", "prune.ffn + ", "--out", "runs/c"],   # a recipe's form
    ["--max-drop", "1%", "--recipe", "prune.ffn ratio", "--out", "runs/c"],
    ["--method", "prne.ffn", "--out", "runs/c"],                           # no such compressor: found by name
    ["--method", "prune.ffn", "--set", "ratio", "--out", "runs/c"],        # --set's form
    # the options of a compressor that declares it loads without torch
    ["--method", "prune.ffn", "--set", "ratio=2", "--out", "runs/c"],
    ["--method", "prune.heads", "--set", "ratoi=0.5", "--out", "runs/c"],
    ["--max-drop", "1%", "--recipe", "prune.fnn + quantize.int8", "--out", "runs/c"],
    ["--max-drop", "1%", "--recipe", "prune.ffn ratio=7 + quantize.int8", "--out", "runs/c"],
    ["--max-drop", "1%", "--recipe", "prune.ffn + recover stpes=3", "--out", "runs/c"],
    # quantize.* and distill.student: their modules import no torch either (quantizers.py, student.py)
    ["--method", "quantize.int4-weight", "--set", "group_size=100", "--out", "runs/c"],
    ["--method", "quantize.int8", "--set", "skp=lm_head", "--out", "runs/c"],
    ["--method", "quantize.float8", "--set", "granularity=col", "--out", "runs/c"],
    ["--method", "quantize.int8-weight", "--set", "skip=3", "--out", "runs/c"],
    ["--method", "distill.student", "--set", "alpha=1", "--out", "runs/c"],   # it takes no options
    ["--max-drop", "1%", "--recipe", "prune.ffn + quantize.int4-weight group_size=7", "--out", "runs/c"],
    # a recipe whose every step loads without torch: where its recover steps stand, and their budget
    ["--max-drop", "1%", "--recipe", "recover + prune.ffn", "--out", "runs/c"],
    ["--max-drop", "1%", "--recipe", "prune.ffn + quantize.int8 + recover", "--out", "runs/c"],
    ["--max-drop", "1%", "--recipe", "prune.ffn + recover", "--recovery-steps", "0", "--out", "runs/c"],
    # --json inside --out, the run folder compress writes whole (the report replaced its config.toml)
    ["--method", "prune.ffn", "--out", "runs/c", "--json", "runs/c/config.toml"],
])
def test_a_compress_job_is_refused_at_submit_with_the_compress_commands_first_checks(
        svc: Deploy, tmp_path: Path, args: list[str]) -> None:
    expected = _line(tmp_path, ["compress", "--checkpoint", "runs/a", *args])
    r = svc.submit("acme", svc.tokens["bob"], command="compress", args=["--checkpoint", "runs/a", *args])
    assert (r.status_code, r.json()["detail"]) == (422, expected)


def test_a_valid_compress_job_is_accepted(svc: Deploy) -> None:
    for args in (["--method", "prune.ffn", "--set", "ratio=0.5"], ["--max-drop", "1%", "--prefer", "latency"],
                 ["--max-drop", "0.5pt", "--recipe", "prune.ffn ratio=0.5 + recover", "--recovery-steps", "3"],
                 ["--method", "quantize.int4-weight", "--set", "group_size=64", "--set", "skip=[\"lm_head\"]"],
                 ["--method", "quantize.float8", "--set", "granularity=row"], ["--method", "distill.student"],
                 ["--max-drop", "1%", "--recipe", "prune.ffn + quantize.int4-weight group_size=32"],
                 ["--max-drop", "1%", "--recipe", "prune.ffn + recover steps=3", "--recovery-steps", "0"]):
        r = svc.submit("acme", svc.tokens["bob"], command="compress",
                       args=["--checkpoint", "runs/a", *args, "--out", "runs/c"])
        assert r.status_code == 201, (args, r.text)
