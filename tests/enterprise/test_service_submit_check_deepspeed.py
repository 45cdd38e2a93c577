"""A ``train`` job whose strategy is deepseek-pro's ``deepspeed`` has its ``strategy.config_path``
file checked at submit, as the job will find it at its start, with the line the job prints
(service.jobcheck; the checks are the strategy's own, deepseek_pro.strategies.deepspeed_user)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _servicehelpers import Deploy, two_tenants
from _submitlines import job_line


@pytest.fixture
def svc(tmp_path: Path) -> Deploy:
    d = two_tenants(tmp_path / "srv")
    yield d
    d.close()


DS = '[strategy]\nname = "deepspeed"\nconfig_path = "ds.json"\n[train]\nmax_steps = 1\n'


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
    ("[train]\nmax_steps = 1\n", {"ds.json": "{nope"}, ["--strategy", "deepspeed", "--set",
                                                         "strategy.config_path=\"ds.json\""]),
    (None, {"ds.json": json.dumps({"scheduler": {}})}, ["--set", "strategy.name=\"deepspeed\"", "--set",
                                                        "strategy.config_path=\"./ds.json\""]),
])
def test_a_deepspeed_config_file_is_checked_at_submit_with_the_jobs_line(
        svc: Deploy, tmp_path: Path, config: str | None, files: dict[str, str], args: list[str]) -> None:
    expected = job_line(tmp_path, "train", config, files, args)
    assert expected.startswith("strategy.config_path: "), expected
    job = {"command": "train", "args": args, "files": files, **({"config": config} if config is not None else {})}
    r = svc.submit("acme", svc.tokens["bob"], **job)
    assert (r.status_code, r.json()["detail"]) == (422, expected)


@pytest.mark.parametrize(("config", "files"), [
    (DS, {"ds.json": json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"})}),
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "AdamW", "params": {"lr": "auto"}}})}),
    # a type DeepSpeed takes from torch.optim: listing those imports torch, so the job checks it
    (DS, {"ds.json": json.dumps({"optimizer": {"type": "Sgd"}})}),
    (DS.replace("ds.json", "{tenant}/data/ds.json"), {}),                        # may be written before the start
    ('[strategy]\nname = "single"\n', {"ds.json": "{nope"}),                     # another strategy reads no file
])
def test_a_valid_deepspeed_file_or_one_submit_cannot_see_is_accepted(
        svc: Deploy, config: str, files: dict[str, str]) -> None:
    config = config.replace("{tenant}", str(svc.root / "tenants" / "acme"))
    r = svc.submit("acme", svc.tokens["bob"], command="train", config=config, files=files)
    assert r.status_code == 201, r.text


def test_the_type_submit_leaves_to_the_job_is_refused_there(tmp_path: Path) -> None:
    # what a job refused at submit would print: the strategy's own check, with torch.optim listed
    line = job_line(tmp_path, "train", DS, {"ds.json": json.dumps({"optimizer": {"type": "Sgd"}})}, [])
    assert line.startswith("strategy.config_path: 'ds.json': optimizer.type 'Sgd' is neither one of DeepSpeed's "
                           "own optimizers"), line
