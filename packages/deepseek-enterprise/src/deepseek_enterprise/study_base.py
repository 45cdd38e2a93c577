"""``deepseek multimodal study CONFIG.toml``: a user's multimodal config as the base of every run
of the study.

The file is read and checked as ``deepseek train`` reads and checks it (one line naming the file
and the field path), judging only the values the study uses (:func:`judged`). Every run's config is the file's tables with what makes the study's model
set over them (:data:`STUDY_KEYS`: the model's modalities and fusion, the recipe's keys, the
task, the seed, the strategy, checkpoints and logging); the file's values of those keys are not
used, and said once. ``model.fusion_options`` of the file go to the runs of the file's own
fusion method only (another method takes other keys), without the recipes' keys where the study
sets those itself (:func:`study_fusion_keys`). Where the file sets them,
``train.max_steps``, ``data.batch_size``, ``train.lr``, ``strategy.device`` and
``data.eval_size`` are the study's ``--steps``, ``--batch``, ``--lr``, ``--device`` and
``--eval-size`` when those options are not given, and ``train.warmup_steps``, ``train.min_lr``,
``train.eval_interval`` and ``data.eval_batches`` replace the study's own schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepseek.errors import ConfigError
from deepseek_enterprise.study_recipes import (
    RECIPES,
    fusion_options_class,
    takes_recipe_fusion_options,
)

MODEL, DATASET = "multimodal.classifier", "multimodal.digits"
STUDY_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("modalities", "fusion", "aux_loss_weight", "modality_dropout", "pretrained", "freeze_pretrained",
              "gradient_modulation"),
    "data": ("task", "train_sources"),
    "train": ("seed",),
    "strategy": ("name",),
    "checkpoint": ("interval", "keep_last", "at_end"),
    "logging": ("progress", "plot", "runs_dir", "name"),
}
"""The keys the study sets in every run (by section); a file's values of these are not used."""
RECIPE_FUSION_KEYS = tuple(dict.fromkeys(k for keys in RECIPES.values() for k in keys.get("fusion_options", {})))
"""``model.fusion_options`` keys the study's recipes set (``joint``, ``late_residual``): the keys of
the built-in methods' fused head (``fusion.HeadOptions``)."""
FILE_FIRST: dict[str, tuple[str, ...]] = {"train": ("warmup_steps", "min_lr", "eval_interval"),
                                         "data": ("eval_batches",)}
"""Keys the study derives from its steps and learning rate unless the file sets them."""
OPTION_KEYS = {"steps": ("train", "max_steps"), "batch": ("data", "batch_size"), "lr": ("train", "lr"),
               "device": ("strategy", "device"), "eval_size": ("data", "eval_size")}
"""The study's options the file's keys stand in for when the option is not given."""


def read_base(path: Path, host: Any, options: dict[str, Any] | None = None,
              defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tables of config file ``path``, checked as ``deepseek train`` checks it (the study's
    model and dataset where it names none); one :class:`ConfigError` line naming the file and
    the field. Only the values the study uses are judged (:func:`judged`): a key a study option
    in ``options`` (``{"steps": 100}``, ``None`` for an option not given) stands in for is judged
    at the option's value, or at the study's default in ``defaults`` where neither the option nor
    the file gives it, and the keys the study sets itself are not judged."""
    from deepseek.config.load import read_toml

    tables = read_toml(path, missing_hint="check the path; a multimodal config such as "
                                          "examples/multimodal/digits.toml is the study's base")
    for section, name in (("model", MODEL), ("data", DATASET)):
        given = tables.get(section, {}).get("name", name) if isinstance(tables.get(section), dict) else name
        if given != name:
            raise ConfigError(f"{path}: {section}.name = {given!r}: the study trains {MODEL} models on "
                              f"{DATASET}; name those, or leave {section}.name out")
    check_run(judged(tables, options or {}, defaults or {}, host), host, str(path), build=True)
    return tables


def judged(tables: dict[str, Any], given: dict[str, Any], defaults: dict[str, Any] | None = None,
           host: Any = None) -> dict[str, Any]:
    """The config the file's check judges: ``tables`` with the study's model and dataset named,
    each key of :data:`OPTION_KEYS` at the value the study uses (:func:`option_values`): the
    option's where ``given`` (``--steps 100`` over ``train.max_steps = -1``), else the file's, else
    the study's default in ``defaults`` (``--batch``'s 64, not ``data.batch_size``'s 16, against
    the file's ``train.grad_accum = 32``); and the keys the study sets in every run
    (:data:`STUDY_KEYS`, the recipes' ``model.fusion_options`` where the study sets them:
    :func:`study_fusion_keys`) left out; ``model.fusion`` stays, as it says which method the file's
    ``fusion_options`` are for."""
    out = with_names(tables)
    values = option_values({s: t for s, t in out.items() if isinstance(t, dict)},  # another value: its check names it
                           {o: given.get(o) for o in OPTION_KEYS}, {o: (defaults or {}).get(o) for o in OPTION_KEYS})
    for option, (section, key) in OPTION_KEYS.items():
        if values[option] is not None and isinstance(out.get(section, {}), dict):  # None: the dataset's eval_size
            out[section] = {**out.get(section, {}), key: values[option]}
    for section, keys in STUDY_KEYS.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys or (section, k) == ("model", "fusion")}
    model = out.get("model")
    if isinstance(model, dict) and isinstance(model.get("fusion_options"), dict):
        study_sets = study_fusion_keys(model.get("fusion", DEFAULT_FUSION), host)
        model["fusion_options"] = {k: v for k, v in model["fusion_options"].items() if k not in study_sets}
    return out


def with_names(tables: dict[str, Any]) -> dict[str, Any]:
    """``tables`` with the study's model and dataset named where they name none."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in tables.items()}
    for section, name in (("model", MODEL), ("data", DATASET)):
        if isinstance(out.get(section, {}), dict):  # another value: the config's own check names it
            out[section] = {"name": name, **out.get(section, {})}
    return out


def option_values(base: dict[str, Any] | None, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The study's option values: each one ``given`` (not ``None``), else the file's key it stands
    for (:data:`OPTION_KEYS`), else its default."""
    out = {}
    for option, (section, key) in OPTION_KEYS.items():
        if given[option] is not None:
            out[option] = given[option]
        elif base is not None and key in base.get(section, {}):
            out[option] = base[section][key]
        else:
            out[option] = defaults[option]
    return out


def option_names(base: dict[str, Any] | None, path: Path | None, given: dict[str, Any]) -> dict[str, str]:
    """How an error names each of the study's option values: the option (``--batch``), or, where
    the file gave the value, the file and its key (``base.toml: data.batch_size``)."""
    out = {}
    for option, (section, key) in OPTION_KEYS.items():
        from_file = given[option] is None and base is not None and key in base.get(section, {})
        out[option] = f"{path}: {section}.{key}" if from_file else f"--{option.replace('_', '-')}"
    return out


def unused_keys(base: dict[str, Any], host: Any = None) -> list[str]:
    """The file's keys the study sets itself (the names of the model and dataset it trains aside)."""
    found = [f"{section}.{key}" for section, keys in STUDY_KEYS.items() for key in keys
             if key in base.get(section, {})]
    fusion_options = base.get("model", {}).get("fusion_options", {})
    study_sets = study_fusion_keys(base.get("model", {}).get("fusion", DEFAULT_FUSION), host)
    return found + [f"model.fusion_options.{k}" for k in study_sets if k in fusion_options]


DEFAULT_FUSION = "cross_attention"
"""``model.fusion`` where a file gives none (``MultimodalOptions.fusion``'s default)."""


def study_fusion_keys(fusion: Any, host: Any = None) -> tuple[str, ...]:
    """The ``model.fusion_options`` keys the study sets itself in the runs of the fusion method named
    ``fusion`` (the file's values of those are not used): the recipes' (:data:`RECIPE_FUSION_KEYS`)
    except a key the method's ``Options`` declare as their own, not as the built-in fused head
    (``Options`` that do not extend ``fusion.HeadOptions``): a plugin's own ``joint`` is its key,
    which the file gives its runs as it gives the rest. A name that resolves to no loadable fusion
    method (:func:`fusion_options_class` is ``None``): all of them (the run's config check refuses
    the name)."""
    import dataclasses

    options = fusion_options_class(fusion, host)
    if options is None or takes_recipe_fusion_options(options):
        return RECIPE_FUSION_KEYS  # no loadable method, or the fused head's keys
    own = {f.name for f in dataclasses.fields(options)}
    return tuple(k for k in RECIPE_FUSION_KEYS if k not in own)


def over_base(run: dict[str, Any], base: dict[str, Any] | None, host: Any = None) -> dict[str, Any]:
    """The config of one run of the study (``run``, :func:`~deepseek_enterprise.study_recipes.study_config`)
    over the file's tables ``base`` (the module docstring says which wins where; ``host``: the
    study's, whose fusion methods' ``Options`` say which ``fusion_options`` keys are the study's,
    :func:`study_fusion_keys`)."""
    if base is None:
        return run
    merged = with_names(base)
    for section, table in run.items():
        mine = {k: v for k, v in table.items() if k not in FILE_FIRST.get(section, ()) or k not in merged.get(section, {})}
        merged[section] = {**{k: v for k, v in merged.get(section, {}).items() if k not in STUDY_KEYS.get(section, ())},
                           **mine}
    file_model = base.get("model", {})
    own = file_model.get("fusion_options", {}) if file_model.get("fusion", DEFAULT_FUSION) == run["model"]["fusion"] \
        else {}
    study_sets = study_fusion_keys(run["model"]["fusion"], host) if own else ()
    options = {**{k: v for k, v in own.items() if k not in study_sets}, **run["model"].get("fusion_options", {})}
    merged["model"].pop("fusion_options", None)
    if options:
        merged["model"]["fusion_options"] = options
    return merged


def check_run(run: dict[str, Any], host: Any, where: str, *, build: bool) -> None:
    """A one-line :class:`ConfigError` starting with ``where`` unless config ``run`` loads and
    (``build``) its model builds on the meta device (no memory, no weights read)."""
    import torch

    from deepseek.config.load import config_from_dict
    from deepseek.training.build import build_model

    try:
        config = config_from_dict(run, host=host)
        if build:
            with torch.random.fork_rng(devices=[]):
                build_model(config, host=host, create_on=torch.device("meta"))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
