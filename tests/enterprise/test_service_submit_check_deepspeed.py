"""A ``train``, ``tune`` or ``bench latency`` job whose config's strategy is deepseek-pro's
``deepspeed`` has its ``strategy.config_path`` file checked at submit, as the job will find it at its
start, alone and against the config, with the line the job prints (service.jobcheck; the checks are
the strategy's own, deepseek_pro.strategies.deepspeed_user)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _servicehelpers import Deploy, submit_checks
from _submitlines import job_line


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deploy]:
    yield from submit_checks(tmp_path_factory, study_check=False)  # not about the study check (test_service_submit_study.py)


DS = '[strategy]\nname = "deepspeed"\nconfig_path = "ds.json"\n[train]\nmax_steps = 1\n'


def submit_line(folder: Path, command: str, config: str | None, files: dict[str, str], args: list[str]) -> str:
    """The job's line (:func:`job_line`, the job run in ``folder/ws``) as the submit gives it: the
    checks against the config name the file as the config does, where the job, whose config
    records it by its absolute path, names it by that path in its workspace."""
    line = job_line(folder, command, config, files, args)
    return line.replace(f"'{(folder / 'ws').resolve()}/", "'")


@pytest.mark.parametrize(("config", "files", "args"), [
    (DS, {}, []),                                                                   # the job is not sent the file
    (DS, {"ds.json": "{nope"}, []),                                                 # not JSON
    (DS, {"ds.json": "[1, 2]"}, []),                                                # not an object
    (DS, {"ds.json": json.dumps({"zero_optimization": {"stage": 5}})}, []),
    (DS, {"ds.json": json.dumps({"scheduler": {"type": "WarmupLR"}})}, []),
    (DS, {"ds.json": json.dumps({"sub_group_size": "auto"})}, []),                 # an "auto" the run cannot fill
    (DS, {"ds.json": json.dumps({"gradient_accumulation_steps": 0})}, []),
    (DS, {"ds.json": json.dumps({"optimizer": {"params": {"lr": 0.1}}})}, []),     # an optimizer without a type
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "MuAdam"}})}, []),          # mup's, not installed here
    # a type DeepSpeed takes from torch.optim, spelled otherwise than torch does (a child lists them)
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "Sgd"}})}, []),
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "LBFGS"}})}, []),           # one DeepSpeed cannot train with
    # the file against the config: the ZeRO stage (strategy.stage's default is 2), bf16/fp16
    (DS, {"ds.json": json.dumps({"zero_optimization": {"stage": 3}})}, []),
    (DS.replace("[train]", "stage = 1\n[train]"), {"ds.json": json.dumps({"zero_optimization": {"stage": 2}})}, []),
    (DS + '[precision]\ndtype = "fp32"\n', {"ds.json": json.dumps({"bf16": {"enabled": True}})}, []),
    (DS, {"ds.json": json.dumps({"fp16": {"enabled": True}})}, []),                # precision.dtype "auto" is never fp16
    (DS, {"ds.json": json.dumps({"bf16": {"enabled": False}})}, ["--precision", "bf16"]),
    (DS, {"ds.json": json.dumps({"zero_optimization": {"stage": 1}})}, ["--set", "strategy.stage=3"]),
    ("[train]\nmax_steps = 1\n", {"ds.json": "{nope"}, ["--strategy", "deepspeed", "--set",
                                                         "strategy.config_path=\"ds.json\""]),
    (None, {"ds.json": json.dumps({"scheduler": {}})}, ["--set", "strategy.name=\"deepspeed\"", "--set",
                                                        "strategy.config_path=\"./ds.json\""]),
])
def test_a_deepspeed_config_file_is_checked_at_submit_with_the_jobs_line(
        svc: Deploy, tmp_path: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    expected = submit_line(tmp_path, "train", config, files, args)
    assert expected.startswith("strategy.config_path: "), expected
    job = {"command": "train", "args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


@pytest.mark.parametrize(("config", "files"), [
    (DS, {"ds.json": json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"})}),
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}})}),
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "SGD"}})}),                # torch.optim's, as torch spells it
    (DS.replace("[train]", "stage = 3\n[train]"), {"ds.json": json.dumps({"zero_optimization": {"stage": 3}})}),
    (DS + '[precision]\ndtype = "bf16"\n', {"ds.json": json.dumps({"bf16": {"enabled": True}})}),
    # the strategy's own key is wrong: the job names it before it compares the file with it
    (DS.replace("[train]", "stage = 4\n[train]"), {"ds.json": json.dumps({"zero_optimization": {"stage": 3}})}),
    (DS.replace("ds.json", "{tenant}/data/ds.json"), {}),                        # may be written before the start
    ('[strategy]\nname = "single"\n', {"ds.json": "{nope"}),                     # another strategy reads no file
])
def test_a_valid_deepspeed_file_or_one_submit_cannot_see_is_accepted(
        svc: Deploy, config: str, files: dict[str, str]) -> None:
    config = config.replace("{tenant}", str(svc.root / "tenants" / "acme"))
    r = svc.submit("acme", svc.tokens["bob"], command="train", config=config, files=files)
    assert r.status_code == 201, r.text


SPACE = '[space]\n"train.lr" = { type = "float", low = 1e-4, high = 1e-2 }\n'
TUNE = ["--study", "s", "--space", "space.toml", "--trials", "2"]


@pytest.mark.parametrize(("command", "config", "files", "args"), [
    # tune's base config, as the study checks it before its first trial
    ("tune", DS, {"space.toml": SPACE}, TUNE),                                     # the job is not sent the file
    ("tune", DS, {"space.toml": SPACE, "ds.json": json.dumps({"scheduler": {}})}, TUNE),
    ("tune", DS, {"space.toml": SPACE, "ds.json": json.dumps({"zero_optimization": {"stage": 3}})}, TUNE),
    ("tune", DS, {"space.toml": SPACE, "ds.json": json.dumps({"optimizer": {"type": "Sgd"}})}, TUNE),
    # bench latency's --config, as it loads it to build the model
    ("bench", None, {"cfg.toml": DS}, ["latency", "--config", "cfg.toml"]),
    ("bench", None, {"cfg.toml": DS, "ds.json": "{nope"}, ["latency", "--config", "cfg.toml"]),
    ("bench", None, {"cfg.toml": DS, "ds.json": json.dumps({"fp16": {"enabled": True}})},
     ["latency", "--config", "cfg.toml"]),
])
def test_tune_and_bench_latency_check_their_configs_deepspeed_file_at_submit(
        svc: Deploy, tmp_path: Path, command: str, config: str | None, files: dict[str, str],
        args: list[str]) -> None:
    expected = submit_line(tmp_path, command, config, files, args)
    assert expected.startswith("strategy.config_path: "), expected
    job = {"command": command, "args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


GOOD = json.dumps({"zero_optimization": {"stage": 2}})


@pytest.mark.parametrize(("files", "args"), [
    ({"ds.json": GOOD, "space.toml": '[space]\n"strategy.stage" = { type = "int", low = 2, high = 3 }\n'}, TUNE),
    ({"ds.json": json.dumps({"bf16": {"enabled": True}}),
      "space.toml": '[space]\n"precision.dtype" = { type = "categorical", choices = ["bf16", "fp32"] }\n'},
     [*TUNE, "--no-baseline"]),
    ({"ds.json": GOOD, "bad.json": "{nope",
      "space.toml": '[space]\n"strategy.config_path" = { type = "categorical", choices = ["ds.json", "bad.json"] }\n'},
     [*TUNE, "--no-baseline"]),
])
def test_a_deepspeed_file_a_tune_space_reaches_is_checked_at_submit(
        svc: Deploy, tmp_path: Path, files: dict[str, str], args: list[str]) -> None:
    """A trial config the search space reaches (an entry at its bounds or choices) against the
    DeepSpeed file it names: only the base config's was checked at submit, so the job was queued
    and failed as its study checked the trials, with the line naming the space entry."""
    expected = submit_line(tmp_path, "tune", DS, files, args)
    assert expected.startswith("space.toml: space.") and "strategy.config_path: " in expected, expected
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=DS, files=files, args=args)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


def test_tune_and_bench_latency_with_a_valid_deepspeed_file_are_accepted(svc: Deploy) -> None:
    ds = json.dumps({"zero_optimization": {"stage": 2}, "optimizer": {"type": "SGD", "params": {"lr": "auto"}}})
    r = svc.submit("acme", svc.tokens["bob"], command="tune", config=DS, files={"space.toml": SPACE, "ds.json": ds},
                   args=TUNE)
    assert r.status_code == 201, r.text
    r = svc.submit("acme", svc.tokens["bob"], command="bench", files={"cfg.toml": DS, "ds.json": ds},
                   args=["latency", "--config", "cfg.toml"])
    assert r.status_code == 201, r.text


def test_a_type_is_left_to_the_job_when_torch_optim_cannot_be_listed(
        svc: Deploy, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepseek_enterprise.service import torchnames

    monkeypatch.setattr(torchnames, "_names", None)
    monkeypatch.setattr(torchnames.sys, "executable", "/nonexistent/python")  # the child cannot start
    r = svc.submit("acme", svc.tokens["bob"], command="train", config=DS,
                   files={"ds.json": json.dumps({"optimizer": {"type": "Sgd"}})})
    assert r.status_code == 201, r.text
    assert torchnames._names is None  # noqa: SLF001 - the next submit that needs the list tries again
