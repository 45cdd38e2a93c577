"""Each job command's own checks at submit, beyond its command line (:func:`own_checks`, run by
:func:`.jobcheck.check_command` on the command's parsed context), on the job's workspace as it will
be at the job's start (:class:`Workspace`):

- for ``train`` (not ``--resume``): builds the config table ``deepseek train`` would validate
  (its config file with its ``--strategy``, ``--precision``, ``--max-steps``, ``--tracker`` and
  ``--set`` applied, :func:`deepseek.cli.train_options.train_config_data`) and runs the config
  loader's checks that read no file (:func:`deepseek.config.load.check_plain_sections`:
  sections, keys with the did-you-mean, types, ranges, cross-field checks), each component it
  names (and each tracker of ``logging.trackers``) found by name on the server's plugins, none loaded
  (:func:`deepseek.config.load.check_component_names`: one of a plugin the server disabled is
  refused with the line the job would print), and a DeepSpeed
  strategy's ``config_path`` file, alone and against the config (:func:`_check_deepspeed_file`);
- for ``tune``: tune's checks of its arguments (:func:`deepseek_enterprise.tune.cli.tune_inputs`),
  the base config's as for ``train``, unless ``--no-baseline`` the base config's value against the
  categorical choices (:func:`deepseek_enterprise.tune.space.check_baseline`), and the same checks
  of the trial configs its space reaches (:func:`deepseek_enterprise.tune.space.check_against`);
  the rest of the study's check (configs built, with torch): ``studycheck``, in a child process;
- for ``compress``: its first checks (:func:`deepseek_enterprise.compress.cli.compress_arguments`),
  then the compressors of ``--method`` and each ``--recipe`` step by name, and the options of
  those that declare they load without torch
  (:data:`deepseek_enterprise.compress.LOADS_WITHOUT_TORCH`: all of enterprise's), and a
  ``--json`` inside ``--out`` (:func:`deepseek_enterprise.compress.cli.check_json_outside_out`);
- for ``eval``: its ``--config`` file read and ``--set`` checked
  (:func:`deepseek.training.weights_source.read_choice`), and that file's ``[data]`` through the
  file-free checks of the keys every dataset shares and its dataset found by name, as for ``train``;
- for ``bench latency``: its checks before it builds a model (its ``--against`` file, its
  arguments by :func:`deepseek.cli.bench_cmd.latency_arguments`, its ``--config`` file's
  checks as for ``train``).

The config and space files are read as the job will find them at its start
(:class:`Workspace`: the server's executor says what a path is there,
:meth:`deepseek_enterprise.service.executor_base.Executor.at_start`): the job's config.toml or one
of its files, else read_toml's "not found" line; a file by an absolute path (the tenant's folder
may change before the job starts) is left to the job. What needs the workspace or the components
is checked when the job runs (for ``tune``, by ``studycheck``): a model's, dataset's,
optimizer's, schedule's or strategy's own keys (a dataset reads its files to check them), the
config of a ``--resume`` job, a tune study's folder and storage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import click

from deepseek_enterprise.service import jobpaths

AtStart = Callable[[PurePath, bool, Mapping[str, str]], str]
"""``at_start(path, has_config, files)``: what ``path`` is in a job's workspace at its start
(:meth:`~deepseek_enterprise.service.executor_base.Executor.at_start`)."""


@dataclass(frozen=True)
class Workspace:
    """A job's workspace as it will be when the job starts, as far as the submit can know it:
    its parsed config.toml (None: it has none), its further files (name: text), and the server's
    executor's rule for what a path names there (``at_start``; default: the local layout)."""

    config: dict[str, Any] | None
    files: Mapping[str, str] = field(default_factory=dict)
    at_start: AtStart = jobpaths.at_start

    def where(self, path: str | PurePath) -> str:
        """``at_start``'s answer for ``path``: ``"config"``, ``"file"``, ``"absent"`` or ``"unknown"``."""
        return self.at_start(PurePath(path), self.config is not None, self.files)

    def text(self, path: str | PurePath) -> str:
        """The text of the job's file that ``path`` names (``where`` gave ``"file"``), as the job reads it."""
        return jobpaths.as_read(self.files[PurePath(path).parts[0]])


class _NotKnownAtSubmit(Exception):
    """A file the job reads is not known at submit (:meth:`Workspace.where`): checked when it runs."""


def _workspace_reader(ws: Workspace) -> Callable[..., dict[str, Any]]:
    """``read_toml``'s stand-in at submit, ``read(path, missing_hint=..., what=...)``: the TOML file ``path``
    of the job's workspace as it will be at the job's start (:meth:`Workspace.where`): its config,
    one of its files (read as the job reads it), read_toml's line for a file not there, or
    :class:`_NotKnownAtSubmit` for one only the job's start will show."""
    from deepseek.config.toml_files import not_found, toml_from_text

    def read(path: str | Path, **named: str) -> dict[str, Any]:  # missing_hint, what: not_found's
        path = Path(path)
        where = ws.where(path)
        if where == "unknown":
            raise _NotKnownAtSubmit
        if where == "absent":
            raise not_found(path, **named)
        if where == "config":
            return dict(ws.config or {})
        return toml_from_text(ws.text(path), path)

    return read


def _check_train(params: dict[str, Any], ws: Workspace, host: Any) -> None:
    """The config ``deepseek train`` validates first (its file, read from the workspace, with the
    options and ``--set`` applied), through the config loader's file-free checks and its
    components found by name on the server's plugins
    (:func:`~deepseek.config.load.check_component_names`); then a DeepSpeed strategy's
    ``config_path`` file (:func:`_check_deepspeed_file`)."""
    from deepseek.cli.train_options import train_config_data
    from deepseek.config.load import check_component_names

    if params["resume"] is not None:
        return  # the checkpoint's config and recorded settings take part: checked when the job runs
    try:
        data = {} if params["config_file"] is None else _workspace_reader(ws)(params["config_file"])
    except _NotKnownAtSubmit:
        return
    data = train_config_data(data, params["overrides"], strategy=params["strategy"], precision=params["precision"],
                             max_steps=params["max_steps"], trackers=params["trackers"])
    check_component_names(data, host)
    _check_deepspeed_file(data, ws, host)


DEEPSPEED = "deepseek-pro:deepspeed"
"""deepseek-pro's DeepSpeed strategy, whose ``config_path`` file is checked at submit."""


def _check_deepspeed_file(data: Mapping[str, Any], ws: Workspace, host: Any) -> None:
    """For a config (file-free checks passed) whose strategy is deepseek-pro's ``deepspeed``, its
    ``strategy.config_path`` file as the job will find it at its start (:meth:`Workspace.where`),
    through the strategy's own checks, which the job runs as its config loads: nothing there is
    the line the strategy prints (``... is not a file``); one of the job's files goes through the
    checks of the file alone (:func:`deepseek_pro.strategies.deepspeed_user.check_user_file`, an
    optimizer type held against ``torch.optim``'s classes as a child process lists them,
    :mod:`deepseek_enterprise.service.torchnames`), then against the config
    (:func:`~deepseek_pro.strategies.deepspeed_user.check_agreement`: the ZeRO stage against
    ``strategy.stage``, bf16/fp16 against ``precision.dtype``). A file elsewhere (an absolute
    path, the job's config.toml) is checked when the job runs, and so are the strategy's other
    keys: where they do not make options, the file is not compared with them here."""
    from deepseek.errors import DeepseekError

    table = data.get("strategy", {})
    path = table.get("config_path")
    if not isinstance(path, str) or not path:
        return
    try:
        component = host.resolve("strategy", table.get("name", "single"))
    except DeepseekError:
        return  # no such strategy, or several: the job's config load names it
    if component.qualified_name != DEEPSPEED:
        return
    from deepseek.config.schema import PrecisionConfig
    from deepseek.config.validate import build_dataclass
    from deepseek_enterprise.service.torchnames import torch_optimizers
    from deepseek_pro.strategies.deepspeed_config import DeepSpeedOptions
    from deepseek_pro.strategies.deepspeed_user import check_agreement, check_user_file, not_a_file

    where = ws.where(path)
    if where == "absent":
        raise not_a_file(path)
    if where != "file":
        return
    cfg = check_user_file(ws.text(path), path, torch_names=torch_optimizers)
    try:  # the strategy's options but the file, which is the job's and not the server's to read
        options = build_dataclass(DeepSpeedOptions, {k: v for k, v in table.items() if k not in ("name", "config_path")},
                                  path="strategy")
    except DeepseekError:
        return  # the job names the wrong key (it checks the strategy's keys before the file)
    dtype = build_dataclass(PrecisionConfig, dict(data.get("precision", {})), path="precision").dtype
    check_agreement(cfg, path, stage=options.stage, dtype=dtype)


_Check = Callable[[dict[str, Any], Workspace, Any], None]


def own_checks() -> dict[click.Command, _Check]:
    """The commands whose checks at submit go beyond the command line, and those checks
    (``check(params, workspace, host)``)."""
    from deepseek.cli.bench_cmd import latency
    from deepseek.cli.train_cmd import evaluate, train
    from deepseek_enterprise.compress.cli import compress
    from deepseek_enterprise.tune.cli import tune

    return {train: _check_train, tune: _check_tune, compress: _check_compress, latency: _check_latency,
            evaluate: _check_eval}


def _check_eval(params: dict[str, Any], ws: Workspace, host: Any) -> None:
    """``deepseek eval``'s checks of its ``--config`` and ``--set``
    (:func:`deepseek.training.weights_source.read_choice`: the file read from the workspace as it
    will be at the job's start, every ``--set`` a ``data.KEY=VALUE``) and, with ``--config``, the
    keys its ``[data]`` (with ``--set`` applied) shares across datasets, and its dataset found by
    name on the server's plugins (:func:`deepseek.config.load.check_component_names`: one of a
    plugin the server disabled, or of none, is refused), named as eval names them. A name several
    plugins register is left to the job (the weights' recorded plugins may settle it), and so are
    the weights and their config (which the job reads first) and the dataset's own keys."""
    from deepseek.config.load import check_component_names
    from deepseek.config.overrides import apply_overrides
    from deepseek.errors import ComponentConflictError, ConfigError
    from deepseek.training.weights_source import DataChoice, choice_label, read_choice

    choice = DataChoice(params["config_file"], params["overrides"])
    try:
        file_config = read_choice(choice, _workspace_reader(ws))
    except _NotKnownAtSubmit:
        return
    if file_config is None:
        return  # the data is the weights' own, with --set over it: checked when the job reads them
    data = apply_overrides({"data": file_config.get("data", {})}, choice.overrides)["data"]
    try:
        check_component_names({"data": data}, host)
    except ConfigError as exc:
        if isinstance(exc.__cause__, ComponentConflictError):
            return
        raise ConfigError(f"{choice_label(Path(params['config_file']), choice)}: {exc}") from None


def _check_latency(params: dict[str, Any], ws: Workspace, host: Any) -> None:
    """``deepseek bench latency``'s checks before it builds a model, in its order: the
    ``--against`` file read from the workspace as it will be at the job's start
    (:func:`deepseek.bench.baseline.baseline_from_text`), the arguments
    (:func:`deepseek.cli.bench_cmd.latency_arguments`: float16 on a GPU only, decode without
    ``--config``, ``--model`` registered, ``--only`` variants of that device and mode), and the
    ``--config`` file read from the workspace with the config loader's file-free checks and its
    DeepSpeed file (as for ``train``). What needs the model built (KV-cache decoding, positions
    against ``--seq``) and the components' own keys and files are checked when the job runs."""
    from deepseek.cli.bench_cmd import latency_arguments
    from deepseek.config.load import check_component_names

    if params["against"] is not None:
        _check_baseline(params["against"], "latency", ws)
    latency_arguments(host, params["model_name"], params["device"], params["dtype"], params["mode"],
                      params["config_path"], params["only"], params["reduced"])
    if params["config_path"] is None:
        return
    try:
        data = _workspace_reader(ws)(params["config_path"])
    except _NotKnownAtSubmit:
        return
    check_component_names(data, host)
    _check_deepspeed_file(data, ws, host)


def _check_baseline(path: str, kind: str, ws: Workspace) -> None:
    """A ``bench KIND --against`` file as the job will find it at its start: one of its files
    (read as the job reads it), or nothing there; another place (an absolute path, the job's
    ``config.toml``, ``tmp/``) is read when the job runs."""
    from deepseek.bench.baseline import baseline_from_text

    where = ws.where(path)
    if where == "absent":
        baseline_from_text(None, path, kind)
    elif where == "file":
        baseline_from_text(ws.text(path), path, kind)


def _check_compress(params: dict[str, Any], _ws: Workspace, host: Any) -> None:
    """``deepseek compress``'s first checks, in its order: its arguments
    (:func:`~deepseek_enterprise.compress.cli.compress_arguments`: the options that go together,
    the budget, the recipes parsed), then each recipe's steps and the ``--method`` with its
    ``--set`` as far as that imports no torch (:func:`~deepseek_enterprise.compress.search.check_steps_without_torch`,
    :func:`~deepseek_enterprise.compress.cli.check_method_without_torch`: the compressors' names,
    and the options of those that declare they load without torch), and for a recipe whose every
    step declares it, the rest of compress's checks of it (:func:`~deepseek_enterprise.compress.cli.check_recipe`:
    where its ``recover`` steps stand, their step budget), then that ``--json`` is outside ``--out``
    (:func:`~deepseek_enterprise.compress.cli.check_json_outside_out`). The other compressors' options, the
    places of steps in a recipe with such a compressor, the outputs' other checks and the checkpoint: when it runs."""
    from deepseek_enterprise.compress.cli import (
        check_json_outside_out,
        check_method_without_torch,
        check_recipe,
        compress_arguments,
    )
    from deepseek_enterprise.compress.search import check_steps_without_torch

    _, recipes = compress_arguments(params["method"], params["max_drop"], params["recipes"], params["prefer"],
                                    params["recovery_steps"], params["settings"], params["latency_runs"])
    for recipe in recipes:
        if check_steps_without_torch(host, recipe):  # every step loads without torch: all of compress's checks
            check_recipe(host, recipe, params["recovery_steps"])
    if params["method"] is not None:
        check_method_without_torch(host, params["method"], params["settings"])
    check_json_outside_out(params["out"], params["json_path"])  # paths as the job gives them, in its workspace


def _check_tune(params: dict[str, Any], ws: Workspace, host: Any) -> None:
    """``deepseek tune``'s checks of its arguments (:func:`~deepseek_enterprise.tune.cli.tune_inputs`:
    the study name, the objective, the base config and space files read from the workspace as
    it will be at the job's start, the tuner and its ``[tuner]`` options); then the base config's
    file-free checks and its DeepSpeed file (as for ``train``), the baseline trial's values
    against the categorical choices (:func:`~deepseek_enterprise.tune.space.check_baseline`; not
    with ``--no-baseline``), and the same checks of every trial config the space reaches
    (:func:`~deepseek_enterprise.tune.space.check_against`), one line naming the space entry.
    The job checks its study folder first (``--out``, ``--storage``): a job failing both prints
    the folder's line when it runs and is refused with the config's here."""
    from deepseek.config.load import check_component_names, file_free_values
    from deepseek_enterprise.tune.cli import tune_inputs
    from deepseek_enterprise.tune.space import check_against, check_baseline, values_at

    try:
        inputs = tune_inputs(host, params["study_name"], params["objective"], params["tuner_name"],
                             params["config_file"], params["space_file"], _workspace_reader(ws))
    except _NotKnownAtSubmit:
        return
    check_component_names(inputs.base, host)
    _check_deepspeed_file(inputs.base, ws, host)
    if params["baseline"]:  # the baseline trial takes the base config's values: a categorical's must be a choice
        check_baseline(inputs.space, values_at(inputs.space, file_free_values(inputs.base)))

    def corner(data: dict[str, Any]) -> None:  # a trial's config, as far as it reads no file but the job's own
        check_component_names(data, host)
        _check_deepspeed_file(data, ws, host)

    # each trial config the space reaches (module docstring), as the study checks them before its first trial
    check_against(inputs.space, inputs.base, corner, base_source=params["config_file"])
