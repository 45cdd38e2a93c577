"""``deepseek tune``'s search space and trial configs without a study process: conditions, the
baseline among a categorical's choices, another optimizer's keys, optimizer group rules searched
by index, a space file's unknown keys. The system tuner's lookups and bench arguments:
test_tune_system.py."""

from __future__ import annotations

from typing import Any

import pytest


def test_a_condition_on_a_stepped_range_takes_its_grid_values() -> None:
    """A stepped range's values are its grid: when = 5 on a step-10 int range, or 10.0 (a float) on
    it, was accepted and never met; when = 0.3 on a step-0.1 float range was never met either,
    Optuna giving 0.30000000000000004. The first two are refused, the third is met."""
    import optuna

    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space

    def space(when: dict) -> Any:
        return parse_space({"space": {"model.dropout": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
                                      "train.warmup_steps": {"type": "int", "low": 0, "high": 100, "step": 10},
                                      "data.batch_size": {"choices": [8, 16], "when": when}}}, "space.toml")

    for when, shown in (({"train.warmup_steps": 5}, "5"), ({"train.warmup_steps": 10.0}, "10.0"),
                        ({"model.dropout": 0.35}, "0.35")):
        with pytest.raises(ConfigError, match=rf"when {next(iter(when))} = {shown}, a value .* never takes"):
            space(when)
    for when in ({"model.dropout": 0.3}, {"train.warmup_steps": 10}):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        met = 0
        for _ in range(100):
            trial = study.ask()
            met += "data.batch_size" in space(when).suggest(trial)
            study.tell(trial, 0.0)
        assert met > 0, when


def test_the_baseline_must_be_one_of_a_categoricals_choices_where_it_applies() -> None:
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import check_baseline, parse_space

    space = parse_space({"space": {
        "strategy.name": {"choices": ["single", "deepspeed"]},
        "strategy.stage": {"choices": [1, 2], "when": {"strategy.name": "deepspeed"}},
    }}, "space.toml")
    check_baseline(space, {"strategy.name": "single", "strategy.stage": 3})  # stage is not searched for single
    with pytest.raises(ConfigError, match=r"space.toml: space.'strategy.stage': the base config's value 3 is not one"):
        check_baseline(space, {"strategy.name": "deepspeed", "strategy.stage": 3})
    with pytest.raises(ConfigError, match=r"space.'strategy.name': the base config's value 'ddp' is not one"):
        check_baseline(space, {"strategy.name": "ddp"})


def test_a_categorical_over_a_path_a_component_resolves_takes_the_base_value_as_written(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text dataset records data.path (DeepSpeed strategy.config_path too) as an absolute path:
    the baseline trial took that recorded value, which no choice written as in the base config
    ("a.txt") matched, so such a study was always refused (add '/.../a.txt' to the choices, or pass
    --no-baseline). The baseline takes the value as written where it is a choice; the trial built
    from it is the base config."""
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.space import parse_space, trial_data
    from deepseek_enterprise.tune.study import baseline_values, check_study
    from deepseek_enterprise.tune.tuner import Tuner

    class Constant(Tuner):
        def run(self, trial: Any) -> float:
            return 0.0

    monkeypatch.chdir(tmp_path)
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"{name} " * 100)
    base = {"data": {"path": "a.txt"}, "train": {"lr": 1}}
    space = parse_space({"space": {"data.path": {"choices": ["a.txt", "b.txt"]},
                                   "train.lr": {"choices": [1.0, 0.5]}}}, "space.toml")
    check_study(Constant(None), space, base, config_from_dict)  # raised for data.path
    config = config_from_dict(base)
    assert config.data.options.path == str(tmp_path / "a.txt")
    values = baseline_values(space, config, base)
    assert values == {"data.path": "a.txt", "train.lr": 1.0}  # lr: the written 1 is no choice (an int), 1.0 is
    assert type(values["train.lr"]) is float
    assert config_from_dict(trial_data(base, values)).to_dict() == config.to_dict()


def test_conditional_parameters_are_searched_only_when_their_condition_holds() -> None:
    import optuna

    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space, trial_data

    space = parse_space({"space": {
        "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2},
        "strategy.name": {"choices": ["single", "deepspeed"]},
        "strategy.stage": {"choices": [1, 2], "when": {"strategy.name": "deepspeed"}},
    }}, "space.toml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        values = space.suggest(trial)
        study.tell(trial, 0.0)
        assert ("strategy.stage" in values) == (values["strategy.name"] == "deepspeed")
        table = trial_data({"strategy": {"name": "single", "device": "cpu"}}, values)["strategy"]
        assert table == ({"name": "single", "device": "cpu"} if values["strategy.name"] == "single"
                         else {"name": "deepspeed", "stage": values["strategy.stage"]})
        seen.add(values["strategy.name"])
    assert seen == {"single", "deepspeed"}
    for when, message in (({"strategy.nam": "deepspeed"}, "not a parameter listed before this one (did you mean"),
                          ({"strategy.name": "ddp"}, "a value strategy.name never takes"),
                          ("deepspeed", "when must be a table")):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            parse_space({"space": {"strategy.name": {"choices": ["single", "deepspeed"]},
                                   "strategy.stage": {"choices": [1, 2], "when": when}}}, "space.toml")


def test_a_trial_choosing_another_optimizer_keeps_the_shared_keys_only() -> None:
    from deepseek.config.load import config_from_dict
    from deepseek_enterprise.tune.space import trial_data

    base = {"optimizer": {"name": "sgd", "nesterov": True, "momentum": 0.8, "weight_decay": 0.0},
            "lr_schedule": {"name": "wsd", "decay_fraction": 0.3}}
    data = trial_data(base, {"optimizer.name": "adamw", "lr_schedule.name": "cosine", "optimizer.eps": 1e-6})
    assert data["optimizer"] == {"name": "adamw", "momentum": 0.8, "weight_decay": 0.0, "eps": 1e-6}
    assert data["lr_schedule"] == {"name": "cosine"}
    config_from_dict(data)  # adamw takes no nesterov, cosine no decay_fraction: both dropped
    assert trial_data(base, {"optimizer.name": "sgd"})["optimizer"] == base["optimizer"]


def test_a_rule_of_optimizer_groups_is_searched_by_index() -> None:
    from deepseek.config.load import config_from_dict
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space, trial_data

    base = {"model": {"name": "tiny"}, "optimizer": {"groups": [{"match": "wte.*"}, {"match": "*.bias"}]}}
    space = parse_space({"space": {"optimizer": {"groups": {"1": {"lr_scale": {"type": "float", "low": 0.1,
                                                                               "high": 1.0}}}}}}, "space.toml")
    assert [p.path for p in space.params] == ["optimizer.groups.1.lr_scale"]
    data = trial_data(base, {"optimizer.groups.1.lr_scale": 0.3})
    assert [g.lr_scale for g in config_from_dict(data).optimizer.groups] == [1.0, 0.3]
    assert base["optimizer"]["groups"][1] == {"match": "*.bias"}  # the base is not changed
    with pytest.raises(ConfigError, match=r"^space.'optimizer.groups.2.lr_scale': in the base config, "
                                          r"optimizer.groups is a list of 2 table\(s\), so the part after it is an "
                                          r"index from 0 to 1 \(got '2'\)$"):
        trial_data(base, {"optimizer.groups.2.lr_scale": 0.3})


def test_every_unknown_key_and_table_of_a_space_file_is_named_in_the_one_line() -> None:
    """A space file with several misspelt keys of a parameter, or several stray tables, is refused
    once naming all of them (core's ``foreign_keys.unknown_keys`` shape for a parameter's keys),
    not one per run."""
    from deepseek.errors import ConfigError
    from deepseek_enterprise.tune.space import parse_space

    takes = "a parameter takes choices, high, log, low, step, type, when"
    with pytest.raises(ConfigError) as keys:
        parse_space({"space": {"train.lr": {"typ": "float", "lo": 0.1, "high": 0.2}}}, "space.toml")
    assert str(keys.value) == ("space.toml: space.'train.lr': unknown keys lo (did you mean 'low'?), "
                               f"typ (did you mean 'type'?); {takes}")
    with pytest.raises(ConfigError) as one:
        parse_space({"space": {"train.lr": {"typ": "float", "low": 0.1, "high": 0.2}}}, "space.toml")
    assert str(one.value) == f"space.toml: space.'train.lr'.typ: unknown key (did you mean 'type'?); {takes}"
    with pytest.raises(ConfigError) as tables:
        parse_space({"spaces": {}, "tunr": {}, "space": {}}, "space.toml")
    assert str(tables.value) == ("space.toml: unknown tables 'spaces' (did you mean 'space'?), 'tunr' (did you mean "
                                 "'tuner'?); a space file holds [space] and optionally [tuner]")
