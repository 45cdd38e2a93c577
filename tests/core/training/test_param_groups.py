"""``[[optimizer.groups]]``: per-parameter-group learning-rate factors and weight decay, on the
single-device strategy (the pro strategies against it: tests/pro/test_param_groups_pro.py).

The rules are checked where they can fail: the config (one line per bad key), the model (a rule
that takes no parameter), the training (a group at ``lr_scale = 0`` does not move, a group's rate
is the schedule's times its factor), the checkpoint (exact resume, refused with other groups).
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from deepseek.config.load import config_from_dict, load_config
from deepseek.errors import CheckpointError, ConfigError, PluginError
from deepseek.training import checkpoint as ckpt
from deepseek.training.engine import ResumeWarning
from deepseek.training.metrics import read_metrics
from deepseek.training.trainer import Trainer

FROZEN_EMBEDDING = [{"match": "wte.*", "lr_scale": 0.0},
                    {"match": ["blocks.0.*"], "lr_scale": 0.5, "weight_decay": 0.0}]


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return ckpt.load_model_state(run_dir / "checkpoints" / f"step-{step}")


def _lrs(run_dir: Path) -> list[float]:
    rows = read_metrics(run_dir / "metrics.jsonl")
    return [r["lr"] for r in rows if "loss" in r and "lr" in r]


@pytest.mark.parametrize(("groups", "message"), [
    ([{"lr_scale": 0.5}], r"^optimizer.groups.0: match is required"),
    ([{"match": ""}], r"^optimizer.groups.0.match: must be a name pattern"),
    ([{"match": ["wte.*", " "]}], r"^optimizer.groups.0.match: must be a name pattern"),
    ([{"match": 3}], r"^optimizer.groups.0.match: 3 \(int\) has the wrong type"),
    ([{"match": "x", "lr_scale": -1}], r"^optimizer.groups.0.lr_scale: must be >= 0"),
    ([{"match": "x", "lr_scale": float("inf")}], r"^optimizer.groups.0.lr_scale: must be a finite number"),
    ([{"match": "x", "weight_decay": -0.1}], r"^optimizer.groups.0.weight_decay: must be >= 0"),
    ([{"match": "x"}, {"match": "y", "lr_sacle": 2}], r"^optimizer.groups.1.lr_sacle: unknown key \(did you mean 'lr_scale'\?\)"),
    ({"match": "x"}, r"^optimizer.groups: expected a list"),
])
def test_bad_rules_are_one_line_naming_the_key(groups: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict({"optimizer": {"groups": groups}})
    assert "\n" not in str(info.value)


def test_rules_round_trip_through_the_resolved_config(tiny_config) -> None:
    from deepseek.config.load import dump_config, read_toml

    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING})
    assert [r.match for r in config.optimizer.groups] == [("wte.*",), ("blocks.0.*",)]
    text = dump_config(config)
    again = config_from_dict(__import__("tomllib").loads(text))
    assert again.optimizer.groups == config.optimizer.groups
    assert read_toml  # the trainer.json path goes through the same to_dict


def test_a_frozen_group_stays_put_and_the_others_train_at_their_factor(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING},
                         train={"max_steps": 4, "warmup_steps": 0, "lr": 1e-2},
                         checkpoint={"interval": 2, "keep_last": 5})
    result = Trainer(config, run_dir=tmp_path / "run").fit()
    early, late = _weights(result.run_dir, 2), _weights(result.run_dir, 4)
    assert torch.equal(early["wte.weight"], late["wte.weight"])  # lr_scale 0: not a bit moved
    assert not torch.equal(early["wpe.weight"], late["wpe.weight"])
    assert not torch.equal(early["blocks.0.attn.qkv.weight"], late["blocks.0.attn.qkv.weight"])


def test_each_group_steps_at_the_schedule_rate_times_its_factor(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING}, train={"max_steps": 3})
    trainer = Trainer(config, run_dir=tmp_path / "run")
    trainer.fit()
    groups = trainer.engine.strategy.optimizer.param_groups
    assert len(groups) == 6  # rest, rule 0, rule 1; matrices then vectors each
    last = _lrs(trainer.run_dir)[-1]
    assert [g["lr"] for g in groups] == pytest.approx([last, last, 0.0, 0.0, last / 2, last / 2], rel=1e-6)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0, 0.1, 0.0, 0.0, 0.0]
    assert [len(g["params"]) for g in groups][2:4] == [1, 0]  # wte (lm_head is the same tensor)


def test_a_rule_taking_everything_at_the_defaults_trains_bit_identically(tiny_config, tmp_path: Path) -> None:
    plain = Trainer(tiny_config(train={"max_steps": 4}), run_dir=tmp_path / "plain").fit()
    ruled = Trainer(tiny_config(optimizer={"groups": [{"match": "*"}]}, train={"max_steps": 4}),
                    run_dir=tmp_path / "ruled").fit()
    assert ruled.losses == plain.losses


def test_resume_is_exact_and_refuses_other_groups(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING}, train={"max_steps": 5},
                         checkpoint={"interval": 2, "keep_last": 5})
    straight = Trainer(config, run_dir=tmp_path / "straight").fit()
    at = straight.run_dir / "checkpoints" / "step-2"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # the same settings: nothing to warn of
        resumed = Trainer(config, run_dir=tmp_path / "resumed", resume=at).fit()
    assert resumed.losses == straight.losses[2:]
    other = tiny_config(optimizer={"groups": [{"match": "wpe.*", "lr_scale": 0.0}, FROZEN_EMBEDDING[1]]},
                        train={"max_steps": 5})  # as many groups, other members
    refused = Trainer(other, run_dir=tmp_path / "other", resume=at)
    with pytest.raises(CheckpointError, match=r"optimizer.safetensors: the checkpoint's optimizer groups differ from "
                                              r"this run's \('wpe.weight': group 0 there, group 2 here; 2 parameter"):
        refused.fit()
    assert refused.optimizer is None  # refused from the metadata, before the strategy built its optimizer
    without = tiny_config(train={"max_steps": 5})
    with pytest.raises(CheckpointError, match=r"the checkpoint's optimizer has 6 parameter groups, this run's 2; "
                                              r"resume with the \[model\] config and \[\[optimizer.groups\]\]"):
        Trainer(without, run_dir=tmp_path / "without", resume=at).fit()


def test_a_changed_factor_applies_from_the_resumed_step(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING}, train={"max_steps": 4},
                         checkpoint={"interval": 2, "keep_last": 5})
    straight = Trainer(config, run_dir=tmp_path / "straight").fit()
    thawed = tiny_config(optimizer={"groups": [{**FROZEN_EMBEDDING[0], "lr_scale": 1.0}, FROZEN_EMBEDDING[1]]},
                         train={"max_steps": 4}, checkpoint={"interval": 2, "keep_last": 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # lr_scale follows the config: no setting is kept
        resumed = Trainer(thawed, run_dir=tmp_path / "thawed",
                          resume=straight.run_dir / "checkpoints" / "step-2").fit()
    assert not torch.equal(_weights(straight.run_dir, 2)["wte.weight"], _weights(resumed.run_dir, 4)["wte.weight"])


def test_a_resume_keeps_the_saved_weight_decay_and_says_so_in_one_line(tiny_config, tmp_path: Path) -> None:
    sections = {"optimizer": {"groups": FROZEN_EMBEDDING}, "train": {"max_steps": 4},
                "checkpoint": {"interval": 2, "keep_last": 5}}
    config = tiny_config(**sections)
    straight = Trainer(config, run_dir=tmp_path / "straight").fit()
    at = straight.run_dir / "checkpoints" / "step-2"
    wd = config.optimizer.weight_decay
    changed = tiny_config(**{**sections, "optimizer": {"groups": FROZEN_EMBEDDING, "weight_decay": 0.5}})
    with pytest.warns(ResumeWarning) as caught:
        resumed = Trainer(changed, run_dir=tmp_path / "changed", resume=at).fit()
    assert resumed.losses == straight.losses[2:]  # trained on the saved weight decay
    # groups 0 and 2 (the default rule's and rule 0's matrices) decay at optimizer.weight_decay
    assert [str(w.message) for w in caught] == [
        "resumed with the checkpoint's optimizer settings where the config now differs: "
        f"group 0 weight_decay {wd!r} (the config gives 0.5); group 2 weight_decay {wd!r} (the config gives 0.5); "
        f"to train with the config's, start a new run from its weights (--set train.init_from=\"{at}\")"]
    # the run's config.toml says which of its values the optimizer did not follow, and still loads
    written = (resumed.run_dir / "config.toml").read_text(encoding="utf-8").splitlines()
    assert written[:3] == [f"# resumed from {at} at step 2, changing optimizer.weight_decay {wd!r} -> 0.5",
                           f"# resumed from {at}: the optimizer kept the checkpoint's group 0 weight_decay {wd!r} "
                           "(the config gives 0.5)",
                           f"# resumed from {at}: the optimizer kept the checkpoint's group 2 weight_decay {wd!r} "
                           "(the config gives 0.5)"]
    assert load_config(resumed.run_dir / "config.toml").optimizer.weight_decay == 0.5
    assert not (straight.run_dir / "config.toml").read_text(encoding="utf-8").startswith("#")
    betas = tiny_config(**{**sections, "optimizer": {"groups": FROZEN_EMBEDDING, "betas": [0.8, 0.9]}})
    with pytest.warns(ResumeWarning, match=r"group 0 betas \[0\.9, 0\.95\] \(the config gives \[0\.8, 0\.9\]\); .*; "
                                           r"and 2 more; to train with"):
        Trainer(betas, run_dir=tmp_path / "betas", resume=at).fit()


def test_a_rule_matching_no_parameter_is_one_line_before_training(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": [{"match": "blocks.*"}, {"match": "blocks.1.*", "lr_scale": 2.0}]})
    with pytest.raises(ConfigError, match=r"^optimizer.groups.1.match: \['blocks.1.\*'\] matches no parameter "
                                          r"of the model or only ones an earlier rule takes; its names look like "
                                          r"'wte.weight'"):
        Trainer(config, run_dir=tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_the_factory_names_plain_parameters_and_refuses_replaced_ones(tiny_config) -> None:
    from deepseek.training.build import build_model, optimizer_factory

    config = tiny_config(optimizer={"groups": FROZEN_EMBEDDING})
    model = build_model(config)
    factory = optimizer_factory(config, names={id(p): n for n, p in model.named_parameters()})
    by_plain = factory(model.parameters())  # a strategy that passes parameters without names
    by_name = factory(model.named_parameters())
    assert [len(g["params"]) for g in by_plain.param_groups] == [len(g["params"]) for g in by_name.param_groups]
    replaced = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    with pytest.raises(PluginError, match=rf"^optimizer.groups: the strategy passed the optimizer factory "
                                          rf"{len(replaced)} parameter\(s\) without names .* pass module.named_parameters"):
        factory(replaced)


def test_config_params_lists_every_parameter_with_its_group(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[optimizer]\n[[optimizer.groups]]\nmatch = "wte.*"\nlr_scale = 0.25\n')
    out = subprocess.run([sys.executable, "-m", "deepseek", "config", "params", str(cfg)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[1:-1]}
    assert rows["wte.weight"] == ["256x128", "0", "0.25", "0.1"]
    assert rows["blocks.0.ln1.bias"] == ["128", "-", "1", "0"]
    bad = subprocess.run([sys.executable, "-m", "deepseek", "config", "params", str(cfg),
                          "--set", 'optimizer.groups=[{match="wtee.*"}]'], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: optimizer.groups.0.match: ['wtee.*'] matches no parameter of the model; its names look like "
        "'wte.weight', 'wpe.weight', 'blocks.0.ln1.weight', ... (deepseek config params lists them all)"]


def test_create_optimizer_checks_groups_as_a_run_does() -> None:
    import deepseek
    from deepseek.errors import UsageError

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    made = deepseek.create_optimizer("adamw", dict(model.named_parameters()), lr=0.1,
                                     groups=[{"match": "1.*", "lr_scale": 0.5}])
    assert [(len(g["params"]), g["lr"]) for g in made.param_groups] == [(1, 0.1), (1, 0.1), (0, 0.05), (2, 0.05)]
    for params, got in [(model.parameters(), "unnamed parameters"), ([{"params": list(model.parameters())}],
                                                                     "parameter groups"), ([], "no parameters")]:
        with pytest.raises(UsageError, match=rf"^create_optimizer: groups= matches parameter names, and params holds {got}"):
            deepseek.create_optimizer("adamw", params, lr=0.1, groups=[{"match": "1.*"}])
    with pytest.raises(ConfigError, match=r"^optimizer.groups.1.match: \['1.\*'\] matches no parameter of the model "
                                          r"or only ones an earlier rule takes"):
        deepseek.create_optimizer("adamw", model.named_parameters(), lr=0.1, groups=[{"match": "*"}, {"match": "1.*"}])


def test_a_rule_on_a_tied_alias_names_the_weight_it_trains_under(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(optimizer={"groups": [{"match": "lm_head.weight", "lr_scale": 0.0}]})
    with pytest.raises(ConfigError, match=r"^optimizer.groups.0.match: \['lm_head.weight'\] matches no parameter of "
                                          r"the model; 'lm_head.weight' is tied to 'wte.weight' and trains under that name"):
        Trainer(config, run_dir=tmp_path / "run").fit()


def test_check_resume_runs_before_set_up_of_a_resumed_run(tiny_config_on, tmp_path: Path) -> None:
    from deepseek.errors import UsageError
    from deepseek.hookspecs import hookimpl
    from deepseek.plugins.host import PluginHost
    from deepseek.plugins.settings import PluginSettings
    from deepseek.training.single import SingleDeviceStrategy

    seen = []

    class Picky(SingleDeviceStrategy):
        @classmethod
        def check_resume(cls, config: Any, optimizer: Any) -> None:
            seen.append(type(optimizer).__name__)
            if config.optimizer.name != "adamw":
                raise UsageError(f"--resume: strategy 'picky' resumes adamw only, not {config.optimizer.name!r}")

    class Plugin:
        @hookimpl
        def deepseek_register_strategies(self, register):  # noqa: ANN001, ANN201
            register("picky", Picky, description="single, picky about resuming")

    host = PluginHost(PluginSettings(autoload=False))
    assert host.register_plugin(Plugin(), dist="deepseek-picky").status == "ok"
    sections = {"strategy": {"name": "picky"}, "train": {"max_steps": 3}, "checkpoint": {"interval": 2, "keep_last": 5}}
    first = Trainer(tiny_config_on(host, **sections), run_dir=tmp_path / "first", quiet=True, host=host).fit()
    assert seen == []  # a fresh run is not a resume
    at = first.run_dir / "checkpoints" / "step-2"
    Trainer(tiny_config_on(host, **sections), run_dir=tmp_path / "again", quiet=True, host=host, resume=at).fit()
    assert seen == ["AdamW"]
    lion = tiny_config_on(host, **sections, optimizer={"name": "lion"})
    with pytest.raises(UsageError, match=r"^--resume: strategy 'picky' resumes adamw only, not 'lion'$"):
        Trainer(lion, run_dir=tmp_path / "lion", quiet=True, host=host, resume=at).fit()
    assert not (tmp_path / "lion").exists()
