"""Typed config sections, TOML loading, --set overrides, and the errors for bad input."""

from __future__ import annotations

import dataclasses
import json
import re
from contextlib import nullcontext
from pathlib import Path

import pytest

from deepseek import hookimpl
from deepseek.config.load import (
    check_component_names,
    config_from_dict,
    dump_config,
    load_config,
    write_config,
)
from deepseek.config.overrides import parse_override
from deepseek.config.schema import Config, ModelConfig
from deepseek.errors import ConfigError, UsageError
from deepseek.plugins.host import PluginHost
from deepseek.plugins.settings import PluginSettings


def test_defaults_are_the_main_job() -> None:
    config = load_config()
    assert config.model.name == "tiny" and config.strategy.name == "single"
    assert config.strategy.options.device == "auto"
    assert config.data.name == "text" and config.data.options.path == "" and config.precision.dtype == "auto"
    assert config.model.options.d_model == 128  # the preset's defaults are the model's options


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[train]\nlr = 1e-3\nmax_steps = 50\n[model]\nn_layers = 2\n'
        '[strategy]\nname = "single"\ndevice = "cpu"\n'
    )
    config = load_config(path, ["train.lr=3e-4", "optimizer.betas=[0.8, 0.9]", "logging.name=demo"])
    assert config.train.lr == 3e-4 and config.train.max_steps == 50
    assert config.optimizer.betas == (0.8, 0.9)
    assert config.logging.name == "demo"  # a bare word falls back to a string
    assert config.model.options.n_layers == 2 and config.model.options.d_model == 128
    assert config.strategy.options.device == "cpu"


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    """Editors on Windows start UTF-8 files with one; tomllib called it 'Invalid statement'."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[train]\nmax_steps = 7\n")
    assert load_config(path).train.max_steps == 7


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(overrides=["model.d_model=64", "train.decay_steps=900", "plugins.prefer=['deepseek-core']"])
    text = dump_config(config)
    assert "decay_steps = 900" in text and 'device = "auto"' in text
    assert load_config(write_config(config, tmp_path / "c.toml")) == config
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("item", "keys", "value"),
    [
        ("train.lr=1e-3", ["train", "lr"], 1e-3),
        ("train.compile=true", ["train", "compile"], True),
        ("data.path=/tmp/some dir", ["data", "path"], "/tmp/some dir"),
        ('model.name="small"', ["model", "name"], "small"),
        ("strategy.name = single", ["strategy", "name"], "single"),
        ('trackers."acme.csv".file=x.csv', ["trackers", "acme.csv", "file"], "x.csv"),
        ("trackers.'a=b'.key=1", ["trackers", "a=b", "key"], 1),
        ('data.files=["a=b.txt"]', ["data", "files"], ["a=b.txt"]),
    ],
)
def test_parse_override(item: str, keys: list[str], value: object) -> None:
    assert parse_override(item) == (keys, value)


@pytest.mark.parametrize("item", ["trainlr", "train.lr", "=3", "train..lr=3", ".lr=1", '"train.lr=3', "train.lr[0]=1"])
def test_bad_override_syntax(item: str) -> None:
    with pytest.raises(UsageError, match=r"expected SECTION\.KEY=VALUE"):
        load_config(overrides=[item])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.lrr=1"], r"train\.lrr: unknown key \(did you mean 'lr'\?\)"),
        (["trian.lr=1"], r"trian: unknown config section \(did you mean 'train'\?\)"),
        (["train.max_steps=ten"], r"train\.max_steps: expected an integer, got 'ten'"),
        # a word TOML reads as a number or boolean: the line says how to give it as text
        (["logging.name=nan"], r"^logging\.name: expected a string, got nan \(float\); TOML reads the value as a "
                               r"number: quote it to give text \(in a file KEY = \"\.\.\.\", --set 'KEY=\"\.\.\.\"'\)$"),
        (["logging.name=true"], r"^logging\.name: expected a string, got True \(bool\); TOML reads the value as a boolean"),
        (["train.lr=-0.1"], r"train\.lr: must be > 0 and at most 100, got -0\.1"),
        (["train.lr=true"], r"train\.lr: expected a number"),
        (["train.lr=inf"], r"^train\.lr: must be a finite number, got inf; give a finite value$"),
        (["optimizer.weight_decay=inf"], r"^optimizer\.weight_decay: must be a finite number, got inf"),
        (["precision.init_scale=inf"], r"^precision\.init_scale: must be a finite number, got inf"),
        # torch keeps the scale in float32: a larger one was an internal error at the first step
        (["precision.init_scale=1e39"], r"^precision\.init_scale: must be > 0 and at most 3\.4028235e\+38 \(the "
                                        r"largest float32\), got 1e\+39"),
        (["train.grad_clip=nan"], r"^train\.grad_clip: must be a finite number, got nan"),
        # an exponent's typo was taken and diverged (or overflowed) at the first step: generous bounds
        (["train.lr=1e308"], r"^train\.lr: must be > 0 and at most 100, got 1e\+308 \((float|int)\)$"),
        (["optimizer.lr=1e308"], r"^optimizer\.lr: .*train\.lr"),  # train.lr's key, named so
        (["optimizer.weight_decay=1e300"], r"^optimizer\.weight_decay: must be >= 0 and at most 100, got 1e\+300 \((float|int)\)$"),
        (["optimizer.eps=2.0"], r"^optimizer\.eps: must be > 0 and at most 1, got 2\.0 \((float|int)\)$"),
        (["optimizer.betas=[0.9, 1.0]"], r"^optimizer\.betas: must be two numbers in \[0, 1\)"),
        (["optimizer.momentum=1.5"], r"^optimizer\.momentum: must be in \[0, 1\)"),
        # it multiplies adafactor's step: 1e300 was inf at the first one
        (["optimizer.name=adafactor", "optimizer.eps2=1e300"], r"^optimizer\.eps2: must be >= 0 and at most 1, got 1e\+300"),
        (["optimizer.name=adafactor", "optimizer.eps1=2.0"], r"^optimizer\.eps1: must be >= 0 and at most 1 \(or unset"),
        (['optimizer.groups=[{match="wte.*", lr_scale=1e300}]'],
         r"^optimizer\.groups\.0\.lr_scale: must be at most 100, got 1e\+300 \((float|int)\)$"),
        (['optimizer.groups=[{match="wte.*", weight_decay=1e300}]'],
         r"^optimizer\.groups\.0\.weight_decay: must be >= 0 and at most 100, got 1e\+300 \((float|int)\)$"),
        # torch counts the steps toward it in 32 bits
        (["precision.growth_interval=2147483648"],
         r"^precision\.growth_interval: must be a whole number from 1 to 2147483647, got 2147483648 \((float|int)\)$"),
        (["model.dropout=-inf"], r"^model\.dropout: must be a finite number, got -inf"),
        (["train.on_nonfinite=ignore"], r"train\.on_nonfinite: 'ignore' .*allowed values: 'stop', 'skip', 'continue'"),
        (["precision.dtype=fp8"], r"precision\.dtype: 'fp8' .*allowed values: 'auto', 'fp32', 'bf16', 'fp16'"),
        (["optimizer.name=adam"], r"optimizer\.name: unknown optimizer 'adam'.*did you mean 'adamw'"),
        (["optimizer.betas=[0.9]"], r"optimizer\.betas: must be two numbers"),
        (["strategy.name=warp"], r"strategy\.name: unknown strategy 'warp'"),
        (["strategy.devcie=cpu"], r"strategy\.devcie: unknown key \(did you mean 'device'\?\)"),
        (["strategy.device=tpu"], r"strategy\.device: .*'cuda:N'"),
        (['strategy.device="cpu\\n"'], r"^strategy\.device: is not allowed; allowed values: .*'cuda:N', got 'cpu\\n' \(str\)$"),
        (["strategy.compression='bf16'"], r"strategy\.compression: 'bf16' cannot be used with strategy 'single' \(it compresses no gradients\)"),
        (["model.name=tinny"], r"model\.name: unknown model 'tinny'; did you mean 'tiny'\?"),
        (['model.name=""'], r"^model\.name: expected the name of a registered model \(a string\), got ''; "
                            r"'deepseek plugins list' names them$"),
        (["model.n_layer=2"], r"model\.n_layer: unknown key \(did you mean 'n_layers'\?\); allowed keys: .*name"),
        (["model.d_model=ten"], r"model\.d_model: expected an integer, got 'ten'"),
        (["model.name=tiny", "model.preset=tiny"], r"model\.preset: give the model as model\.name only"),
        (["data.name=texts"], r"data\.name: unknown dataset 'texts'; did you mean 'text'\?"),
        (["data.seq_lenn=3"], r"data\.seq_lenn: unknown key \(did you mean 'seq_len'\?\); allowed keys: batch_size, eval_batches, name, "),
        (["data.path=/no/such/corpus"], r"data\.path: '/no/such/corpus' does not exist"),
        (["data.batch_size=10", "train.grad_accum=3"], r"train\.grad_accum: data\.batch_size=10 is not divisible"),
        (["train.min_lr=1", "train.lr=0.1"], r"train\.min_lr: 1\.0 is above train\.lr"),
        (["checkpoint.keep_last=0"], r"checkpoint\.keep_last: must be >= 1"),
        (["train.compile=True"], r"^train\.compile: expected true or false, got 'True' \(str\); TOML writes it true "
                                 r"\(lower case\)$"),
        (["train.compile=yes"], r"^train\.compile: expected true or false, got 'yes' \(str\)$"),
        (["train=3"], r"expected SECTION\.KEY=VALUE"),
        (["train.lr.x=3"], r"train\.lr: expected a number"),
        (["train.lr=1", "train.lr.x=3"], r"train\.lr is a value, not a table; set it whole \(train\.lr=VALUE\)$"),
        (['optimizer.groups=[{match="wte.*"}]', "optimizer.groups.1.lr_scale=0.5"],
         r"optimizer\.groups is a list of 1 table\(s\), so the part after it is an index from 0 to 0 \(got '1'\)"),
        (['optimizer.groups=[{match="wte.*"}]', "optimizer.groups.lr_scale=0.5"],
         r"optimizer\.groups is a list of tables; set a key of one of them by its index, as in optimizer\.groups\.0\.KEY"),
        (['optimizer.groups=[{match="wte.*"}]', "optimizer.groups.0.match.x=1"],
         r"optimizer\.groups\.0\.match is a value, not a table"),
        (["optimizer.groups=[]", "optimizer.groups.0.lr_scale=0.5"],
         r"optimizer\.groups is an empty list; add a \[\[optimizer\.groups\]\] table to the config file, then set "
         r"its keys by index \(optimizer\.groups\.0\.KEY\)$"),
        # an index into a list the config does not give
        (["optimizer.groups.0.lr_scale=0.5"],
         r"^--set 'optimizer\.groups\.0\.lr_scale=0\.5': optimizer\.groups has no list of tables to enter at index 0: "
         r"the config gives no \[\[optimizer\.groups\]\] table; add them to the config file, then set their keys by "
         r"index \(optimizer\.groups\.0\.KEY\)$"),
        # a list of values takes no index; an index is written without sign or leading zero
        (["optimizer.betas=[0.9, 0.95]", "optimizer.betas.0.x=0.8"],
         r"optimizer\.betas is a list of values, not of tables, so it takes no index; set it whole, as in "
         r"optimizer\.betas=\[\.\.\.\]$"),
        (["optimizer.betas=[0.9, 0.95]", "optimizer.betas.0=0.8"], r"optimizer\.betas is a list of values"),
        (['optimizer.groups=[{match="wte.*"}]', "optimizer.groups.00.lr_scale=0.5"],
         r"index from 0 to 0 \(got '00'\)"),
        (['optimizer.groups=[{match="wte.*"}]', "optimizer.groups.\"\uff10\".lr_scale=0.5"],
         "index from 0 to 0 \\(got '\uff10'\\)"),  # a full-width zero
        # a path below a key the file leaves unset makes a table there: the message names its keys
        (["optimizer.weight_decay.0=1"], r"^optimizer\.weight_decay: expected a number, got a table \(keys: 0\)$"),
    ],
)
def test_bad_values_name_the_field(overrides: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        load_config(overrides=overrides)
    assert "\n" not in str(info.value)


def test_a_list_of_tables_is_set_by_index() -> None:
    config = load_config(overrides=['optimizer.groups=[{match="wte.*"}, {match="*.bias", weight_decay=0.0}]',
                                    "optimizer.groups.0.lr_scale=0.25", "optimizer.groups.1.match=*ln*"])
    assert [(g.match, g.lr_scale, g.weight_decay) for g in config.optimizer.groups] == [
        (("wte.*",), 0.25, None), (("*ln*",), 1.0, 0.0)]


def test_the_last_set_of_a_key_wins_and_errors_name_a_list_item_as_set_enters_it() -> None:
    config = load_config(overrides=["train.lr=1e-3", "train.lr=2e-3"])
    assert config.train.lr == 2e-3
    # the path an error names is the one --set takes (optimizer.groups.1.lr_scale)
    with pytest.raises(ConfigError, match=r"^optimizer\.groups\.1\.lr_scale: must be >= 0 \(0 keeps the group.s parameters fixed\), got -1 \(int\)$"):
        load_config(overrides=['optimizer.groups=[{match="wte.*"}, {match="*.bias"}]', "optimizer.groups.1.lr_scale=-1"])


def test_strategy_with_core_missing_edition_says_what_to_install() -> None:
    core_only = PluginHost(PluginSettings(autoload=False))
    with pytest.raises(ConfigError, match="strategy.name: .*zero3.*deepseek-pro"):
        load_config(overrides=["strategy.name=zero3"], host=core_only)


def test_a_json_file_given_as_the_config_says_what_to_do_instead(tmp_path: Path) -> None:
    """A Hugging Face user's first try, deepseek train my-gpt2/config.json, was told to fix the
    syntax at line 1 of a valid JSON file."""
    hf = tmp_path / "my-gpt2"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 2}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(hf / 'config.json'))}: not valid TOML: .*; it is a Hugging "
                                          rf"Face model's config\.json \(gpt2\); import the model with deepseek "
                                          rf"import-hf {re.escape(str(hf))} --out DIR, then give DIR/config\.toml"):
        load_config(hf / "config.json")
    (tmp_path / "train.json").write_text(json.dumps({"train": {"lr": 1e-3}}))
    with pytest.raises(ConfigError, match=r"train\.json: not valid TOML: .*; it is JSON; write it as TOML \(docs/config\.md\)$"):
        load_config(tmp_path / "train.json")


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML: .*line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_a_config_that_is_no_regular_file_or_too_large_is_refused_unread(tmp_path: Path) -> None:
    """A device or FIFO would be read without end (or block): refused by its kind, as is a file
    far larger than any config; a NUL character in a string value is refused by its key."""
    import os

    fifo = tmp_path / "cfg.toml"
    os.mkfifo(fifo)
    for path in (Path("/dev/zero"), fifo):
        with pytest.raises(ConfigError, match="not a regular file .*give a TOML config file"):
            load_config(path)
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate((16 << 20) + 1)
    with pytest.raises(ConfigError, match="too large for a TOML config file"):
        load_config(big)
    with pytest.raises(ConfigError, match=r"logging\.name: contains a NUL character"):
        load_config(overrides=['logging.name="a\\u0000b"'])
    with pytest.raises(ConfigError, match=r"logging\.runs_dir: contains a NUL character"):
        load_config(overrides=['logging.runs_dir="r\\u0000"'])


def test_data_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corpus.txt").write_text("hello world\n" * 100)
    monkeypatch.chdir(tmp_path)
    config = load_config(overrides=["data.path=corpus.txt"])
    assert config.data.options.path == str(tmp_path / "corpus.txt")


def test_model_options_are_the_gpt_fields_with_the_preset_defaults() -> None:
    from deepseek.models import GPTConfig

    config = load_config(overrides=["model.name=small", "model.n_layers=2"])
    assert {f.name for f in dataclasses.fields(config.model.options)} == {f.name for f in dataclasses.fields(GPTConfig)}
    assert (config.model.options.d_model, config.model.options.n_layers) == (768, 2)
    assert {f.name for f in dataclasses.fields(ModelConfig)} == {"name", "options"}


def test_old_preset_key_is_read_with_a_deprecation_warning() -> None:
    from deepseek.config.load import DeprecatedConfigWarning

    with pytest.warns(DeprecatedConfigWarning, match=r"model\.preset is deprecated; write model\.name = 'small'"):
        config = load_config(overrides=["model.preset=small", "model.n_layers=2"])
    assert config.model.name == "small" and config.model.options.n_layers == 2
    assert "preset" not in dump_config(config)


class Validator:
    """A plugin rejecting one combination, as a cross-feature check would."""

    def __init__(self) -> None:
        self.seen: list[Config] = []

    @hookimpl
    def deepseek_validate_config(self, config: Config) -> None:
        self.seen.append(config)
        if config.precision.dtype == "fp16" and config.train.activation_checkpointing:
            raise ConfigError("precision.dtype: fp16 with train.activation_checkpointing is not supported here")


def test_validate_config_hook_runs_before_anything_heavy() -> None:
    validator = Validator()
    host = PluginHost(PluginSettings(autoload=False))
    host.register_plugin(validator, dist="deepseek-validator")
    load_config(overrides=["precision.dtype=fp16"], host=host)
    with pytest.raises(ConfigError, match="fp16 with train.activation_checkpointing"):
        load_config(overrides=["precision.dtype=fp16", "train.activation_checkpointing=true"], host=host)
    load_config(overrides=["precision.dtype=fp16", "train.activation_checkpointing=true"], validate=False, host=host)
    assert len(validator.seen) == 2 and isinstance(validator.seen[0], Config)


def test_config_md_is_current() -> None:
    from deepseek.config.docgen import render

    page = (Path(__file__).resolve().parents[3] / "docs" / "config.md").read_text(encoding="utf-8")
    assert page == render(), "docs/config.md is stale: run python -m deepseek.config.docgen > docs/config.md"
    assert "|  |" not in page, "a config key without a meaning: give the field a docstring"


def test_a_key_of_another_component_names_it_and_the_name_to_set() -> None:
    """data.files with the default text dataset: the hf dataset takes it, so the line says so
    (a plain typo still gets the did-you-mean and the allowed keys)."""
    core_only = PluginHost(PluginSettings(autoload=False))
    with pytest.raises(ConfigError) as info:
        load_config(overrides=['data.files=["a.jsonl"]'], host=core_only)
    assert str(info.value) == ("data.files: unknown key for dataset 'text'; dataset 'hf' (deepseek-core) takes it: "
                               'set data.name = "hf", or remove data.files (--set \'~data.files\')')
    # every key of the table in the one line (the first was refused alone, one per run): the name to set
    # where one component takes them all, the did-you-mean of a key none takes
    with pytest.raises(ConfigError) as info:
        load_config(overrides=['data.files=["a.jsonl"]', 'data.text_field="t"'], host=core_only)
    assert str(info.value) == ("data: unknown keys for dataset 'text': files, text_field (dataset 'hf' (deepseek-core) "
                               "takes them); set data.name = \"hf\", or remove them (--set '~data.files' --set "
                               "'~data.text_field')")
    with pytest.raises(ConfigError) as info:
        load_config(overrides=['data.files=["a.jsonl"]', "data.pattrn=1"], host=core_only)
    assert str(info.value) == ("data: unknown keys for dataset 'text': files (dataset 'hf' (deepseek-core) takes it), "
                               "pattrn (did you mean 'pattern'?); set data.name = \"hf\" and remove pattrn "
                               "(--set '~data.pattrn'), or remove them all (--set '~data.files' --set '~data.pattrn')")
    with pytest.raises(ConfigError) as info:  # a typo beside keys another component takes: the name, the rest removed
        load_config(overrides=['data.files=["a.jsonl"]', 'data.text_field="t"', "data.pattrn=1", "data.zz=2"],
                    host=core_only)
    assert str(info.value) == ("data: unknown keys for dataset 'text': files, text_field (dataset 'hf' (deepseek-core) "
                               "takes them), pattrn (did you mean 'pattern'?), zz; set data.name = \"hf\" and remove "
                               "pattrn, zz (--set '~data.pattrn' --set '~data.zz'), or remove them all (--set "
                               "'~data.files' --set '~data.pattrn' --set '~data.text_field' --set '~data.zz')")
    with pytest.raises(ConfigError, match=r"data\.pattrn: unknown key \(did you mean 'pattern'\?\); allowed keys"):
        load_config(overrides=["data.pattrn=x"], host=core_only)


def test_an_uninstalled_preferred_distribution_is_a_warning_with_a_did_you_mean() -> None:
    core_only = PluginHost(PluginSettings(autoload=False))
    with pytest.warns(UserWarning, match=r"^plugins\.prefer: distribution 'deepseek-cor' is not installed \(did you "
                                         r"mean 'deepseek-core'\?\); installed: deepseek-core(, deepseek-\w+)*$"):  # and pro/enterprise where present
        config = load_config(overrides=["plugins.prefer=['deepseek-cor']"], host=core_only)
    assert config.plugins.prefer == ("deepseek-cor",)  # kept: the same config may travel to a machine that has it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(overrides=["plugins.prefer=['core']"], host=core_only)  # a short name of an installed one


def test_set_tilde_removes_a_key_the_file_gives(tmp_path: Path) -> None:
    """Switching a component from the command line left the old one's keys, refused as unknown,
    and --set could not remove them."""
    path = tmp_path / "s.toml"
    path.write_text('[lr_schedule]\nname = "wsd"\ndecay_fraction = 0.2\n')
    with pytest.raises(ConfigError, match=r"or remove lr_schedule\.decay_fraction \(--set '~lr_schedule\.decay_fraction'\)"):
        load_config(path, ["lr_schedule.name=cosine"])
    config = load_config(path, ["lr_schedule.name=cosine", "~lr_schedule.decay_fraction"])
    assert config.lr_schedule.name == "cosine"
    with pytest.raises(UsageError, match=r"^--set '~lr_schedule\.nothere': the config has no lr_schedule\.nothere"):
        load_config(path, ["~lr_schedule.nothere"])
    with pytest.raises(UsageError, match=r"expected ~SECTION\.KEY"):
        load_config(path, ["~lr_schedule"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.learning_rate=1e-4",
         r"^train\.learning_rate: unknown key \(learning_rate of Hugging Face's TrainingArguments is train\.lr here\); "
         r"allowed keys: activation_checkpointing, "),
        ("train.per_device_train_batch_size=8",
         r"^train\.per_device_train_batch_size: unknown key \(per_device_train_batch_size of Hugging Face's "
         r"TrainingArguments is data\.batch_size here; the global batch: all ranks and micro-batches together\)"),
        ("train.max_epochs=3", r"^train\.max_epochs: unknown key \(max_epochs of Lightning's Trainer is "
                               r"train\.max_steps here; steps, not epochs; deepseek\.fit takes max_epochs\)"),
        ("model.hidden_size=64", r"^model\.hidden_size: unknown key \(hidden_size of a Hugging Face config\.json is "
                                 r"model\.d_model here\); allowed keys: bias, "),
        ("data.block_size=64", r"^data\.block_size: unknown key \(block_size of Hugging Face's examples and TRL is "
                               r"data\.seq_len here\)"),
        # deepseek's own key in another table, beside the shared keys and adamw's own (master_update)
        ("optimizer.lr=1e-3", r"^optimizer\.lr: unknown key \(lr is train\.lr here\); allowed keys: betas, eps, fused, "
                              r"groups, master_update, momentum, name, weight_decay$"),
        ("train.weight_decay=0.01", r"^train\.weight_decay: unknown key \(weight_decay of Hugging Face's "
                                    r"TrainingArguments is optimizer\.weight_decay here\)"),
    ],
)
def test_hugging_face_and_lightning_names_point_at_deepseeks_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_a_foreign_name_is_not_sent_to_a_key_the_table_lacks() -> None:
    from deepseek.config.foreign_keys import unknown_key_hint

    # a plugin's model without d_model: no pointer to model.d_model, difflib's suggestion instead
    assert unknown_key_hint("model", "hidden_size", ["name", "hidden"]) == " (did you mean 'hidden'?)"
    assert unknown_key_hint("model", "hidden_size", ["name", "d_model"]) == (
        " (hidden_size of a Hugging Face config.json is model.d_model here)")
    # nested tables are not config sections: a group's lr is not sent to train.lr
    assert unknown_key_hint("optimizer.groups.0", "lr", ["match", "lr_scale"]) == ""


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.learning_rate=1e-4", "train.max_stepz=3"],
     "train: unknown keys learning_rate (learning_rate of Hugging Face's TrainingArguments is train.lr here), "
     "max_stepz (did you mean 'max_steps'?); allowed keys: activation_checkpointing, attention, compile, "
     "compile_scope, decay_steps, early_stop_min_delta, early_stop_patience, eval_interval, grad_accum, grad_clip, "
     "init_device, init_from, lr, max_steps, min_lr, monitor, monitor_mode, on_nonfinite, preempt_grace_s, seed, "
     "warmup_steps"),
    (["optimizer.name=sgd", "optimizer.lr=1", "optimizer.betaz=1"],
     "optimizer: unknown keys lr (lr is train.lr here), betaz (did you mean 'betas'?); allowed keys: betas, eps, "
     "fused, groups, momentum, name, nesterov, weight_decay"),
    (["lr_schedule.name=constant", "lr_schedule.warmup=1", "lr_schedule.zz=2"],
     "lr_schedule: unknown keys warmup, zz (lr_schedule 'constant' takes no options of its own); allowed keys: name"),
])
def test_every_unknown_key_of_a_table_is_in_the_one_line(overrides: list[str], message: str) -> None:
    """A table's unknown keys were refused one per run, the first only: a user swapping a
    component (its saved table) learned the keys to drop over several runs."""
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    assert str(info.value) == message


@pytest.mark.parametrize("data", [
    {"strategy": {"name": "ddp"}},                                  # pro's, not loaded here (or disabled)
    {"model": {"name": "tny"}},
    {"data": {"name": "txt"}},
    {"optimizer": {"name": "adamm"}},
    {"lr_schedule": {"name": "cosin"}},
    {"model": {"preset": "smal"}},                                  # the old spelling of model.name
    {"strategy": {"name": 3}},
])
def test_check_component_names_refuses_with_the_loaders_line_and_loads_nothing(data: dict) -> None:
    host = PluginHost(PluginSettings())
    with pytest.raises(ConfigError) as loaded, pytest.warns(FutureWarning) if "preset" in data.get("model", {}) else nullcontext():
        config_from_dict(data, host=host)
    with pytest.raises(ConfigError) as named:
        check_component_names(data, host=host)
    assert str(named.value) == str(loaded.value)
    assert str(named.value).startswith(f"{next(iter(data))}.name: "), named.value


def test_check_component_names_passes_a_config_whose_components_are_found() -> None:
    check_component_names({"model": {"name": "small", "d_model": 1}, "strategy": {"name": "single"}},
                          host=PluginHost(PluginSettings()))  # its own keys are the loader's


@pytest.mark.parametrize("data", [
    {},
    {"train": {"lr": 1, "max_steps": 40}, "data": {"batch_size": 4, "seq_len": 32}, "optimizer": {"name": "sgd"}},
    {"model": {"name": "small", "d_model": 64, "n_heads": 4}, "lr_schedule": {"name": "wsd"},
     "precision": {"dtype": "fp32"}, "logging": {"plot": False}},
])
def test_file_free_values_are_the_loaders_where_no_component_decides(data: dict) -> None:
    """What the job service checks a tune job's baseline with at submit: each value it gives is
    the loaded config's, typed as loaded (train.lr = 1 is 1.0); a component's own keys are left out."""
    from deepseek.config.load import file_free_values

    free, loaded = file_free_values(data), config_from_dict(data, host=PluginHost(PluginSettings())).to_dict()
    for section, table in free.items():
        for key, value in table.items():
            assert loaded[section][key] == value and type(loaded[section][key]) is type(value), (section, key)
    assert "seq_len" not in free["data"] and set(free["model"]) == {"name"} and type(free["train"]["lr"]) is float
