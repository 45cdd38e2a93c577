"""What ``deepseek multimodal study`` trains: the models (:data:`CONFIGS`: the unimodal ones and
the fused ones with their fusion; any other registered fusion method's name is a fused model of
every modality, :func:`model_of`, :func:`check_models`), the fused models' training recipes (:data:`RECIPES`) and which
(recipe, task) pairs start from, stack on or calibrate the unimodal models, the ``deepseek train``
config of each run (:func:`study_config`) and the order the runs train in (:func:`run_order`).
Plain data and rules: nothing here imports torch or trains (:mod:`deepseek_enterprise.study` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepseek_enterprise.fusion import FusionBaseOptions

CONFIGS: dict[str, tuple[tuple[str, ...], str]] = {
    "vision": (("vision",), "late"),
    "audio": (("audio",), "late"),
    "text": (("text",), "late"),
    "late": (("vision", "audio", "text"), "late"),
    "concat": (("vision", "audio", "text"), "concat"),
    "cross_attention": (("vision", "audio", "text"), "cross_attention"),
}
UNIMODAL = tuple(c for c, (modalities, _) in CONFIGS.items() if len(modalities) == 1)
"""The unimodal models (their names are the modalities')."""
JOINT = {"aux_loss_weight": 0.5, "modality_dropout": 0.2, "fusion_options": {"joint": True}}
RECIPES: dict[str, dict[str, Any]] = {
    "aux": {"aux_loss_weight": 0.5, "modality_dropout": 0.2},
    "joint": JOINT,
    "pretrained": JOINT,
    "frozen": {**JOINT, "freeze_pretrained": True},
    "stacked": {**JOINT, "freeze_pretrained": True},
    "stacked-residual": {**JOINT, "fusion_options": {"joint": True, "late_residual": True}, "freeze_pretrained": True},
    "calibrated": {**JOINT, "freeze_pretrained": True},
    "balanced": {**JOINT, "gradient_modulation": 1.0},
    "pretrained-balanced": {**JOINT, "gradient_modulation": 1.0},
}
"""The fused models' training recipes: ``aux`` per-modality auxiliary losses (each modality's
classifier on its own label) and modality dropout; ``joint`` the same, and ``concat`` and
``cross_attention`` add the joint-prediction head (``fusion_options.joint``), and on the
complementary task no modality dropout (there a sample missing a modality has no answer: dropout
0.2 per modality leaves 49% of the training samples unanswerable). ``pretrained`` is ``joint``
whose fused models start, on the redundant task, from the same seed's unimodal models
(``model.pretrained``: their encoders, projections and own classifiers; the study trains those
first); ``frozen`` the same with those parts kept fixed (``model.freeze_pretrained``), which
leaves ``late`` nothing to train: it is the ensemble of the unimodal models, evaluated as it
starts. On the complementary task both are ``joint``: its unimodal models learn the class, which
no single modality shows, so they have nothing to start from. ``stacked`` is ``frozen`` with
the training split cut in two (``data.train_sources``, :data:`STACKED`): the unimodal models
train on its ``fit`` part, the fused models' heads on its ``blend`` part, a speaker and images
the unimodal models never saw (stacking); ``stacked-residual`` is ``stacked`` whose fused logits
are the ensemble's plus a learned correction that starts at zero (``fusion_options.late_residual``).
``calibrated`` is ``frozen`` with every model trained on the ``fit`` part, after which each fused
model (``late`` too) gets ``logit_weights`` fitted on the ``blend`` part with everything else
fixed (:mod:`deepseek_enterprise.calibration`; :data:`CALIBRATED`); its rows record the figures
before calibration too. ``balanced`` is ``joint`` with on-the-fly gradient modulation
(``model.gradient_modulation = 1.0``: the encoder of the modality whose own classifier is the most
confident on a batch gets a smaller gradient, :mod:`deepseek_enterprise.modulation`), against the
modality competition of joint training; ``pretrained-balanced`` is ``pretrained`` with the same
modulation. ``late`` takes ``aux``'s keys (and, with the recipes that start from the unimodal models, the
pretrained ones); any other fusion method every key, ``fusion_options`` only where it builds the
built-in fused head (:func:`takes_recipe_fusion_options`: ``concat``, ``cross_attention``, a
plugin's whose ``Options`` extend ``fusion.HeadOptions``). Unimodal models take none."""
DEFAULT_RECIPE = "joint"
MODALITY_ORDER = ("vision", "audio", "text")
NO_DROPOUT = {(recipe, "complementary") for recipe in RECIPES if recipe != "aux"}
"""(recipe, task) pairs trained without modality dropout."""
PRETRAINED = {(recipe, "redundant") for recipe in ("pretrained", "frozen", "stacked", "stacked-residual", "calibrated",
                                                    "pretrained-balanced")}
"""(recipe, task) pairs whose fused models start from the unimodal models."""
STACKED = {("stacked", "redundant"), ("stacked-residual", "redundant")}
"""(recipe, task) pairs whose unimodal models train on the ``fit`` part of the training split and
whose fused models on its ``blend`` part (``data.train_sources``)."""
CALIBRATED = {("calibrated", "redundant")}
"""(recipe, task) pairs whose models all train on the ``fit`` part and whose fused models are then
calibrated on the ``blend`` part."""


def model_of(config: str) -> tuple[tuple[str, ...], str]:
    """The modalities and the fusion method of the study's model ``config``: its :data:`CONFIGS`
    entry, else (a registered fusion method's name, :func:`check_models`) every modality fused
    by that method."""
    return CONFIGS.get(config, (MODALITY_ORDER, config))


def check_models(configs: tuple[str, ...] | list[str], host: Any, where: str = "--config") -> None:
    """A one-line :class:`~deepseek.errors.UsageError` unless every name of ``configs`` is a
    unimodal model (:data:`UNIMODAL`) or a fusion method registered with ``host`` (the registry
    is the one list of them: the built-in ``late``, ``concat``, ``cross_attention`` and any
    plugin's), with a did-you-mean over those names."""
    from deepseek.arguments import lookup_hint
    from deepseek.errors import UsageError
    from deepseek.names import did_you_mean

    fusions = host.names("fusion")
    for name in configs:
        if name not in UNIMODAL and name not in fusions:
            choices = [*UNIMODAL, *fusions]
            raise UsageError(f"{where}: {name!r} is not a model of the study{did_you_mean(name, choices)}; give "
                             f"{', '.join(UNIMODAL)} (unimodal) or a registered fusion method: "
                             f"{', '.join(fusions) or 'none'} ({lookup_hint()})")


def fused_configs(configs: tuple[str, ...] | list[str]) -> list[str]:
    """The fused models (more than one modality) among ``configs``, in their order."""
    return [c for c in configs if len(model_of(c)[0]) > 1]


def train_sources(config: str, recipe: str, task: str) -> str:
    """The ``data.train_sources`` of model ``config`` trained with ``recipe`` on ``task``."""
    if (recipe, task) in CALIBRATED:
        return "fit"
    if (recipe, task) not in STACKED:
        return "all"
    return "fit" if len(model_of(config)[0]) == 1 else "blend"


def starts_from_unimodal(config: str, recipe: str, task: str) -> bool:
    """Whether model ``config`` trained with ``recipe`` on ``task`` starts from the unimodal models."""
    return (recipe, task) in PRETRAINED and len(model_of(config)[0]) > 1


def is_ensemble(config: str, recipe: str, task: str) -> bool:
    """Whether the model is late fusion of the unimodal models kept fixed: nothing of it trains, so
    the study evaluates it as it starts (the ensemble of the unimodal models)."""
    return (starts_from_unimodal(config, recipe, task) and model_of(config)[1] == "late"
            and bool(RECIPES[recipe].get("freeze_pretrained")))


def fusion_options_class(fusion: Any, host: Any = None) -> type[FusionBaseOptions] | None:
    """The ``Options`` the fusion method named ``fusion`` declares (``Fusion.Options``), looked up
    on ``host`` (the study's; default: the process's); ``None`` where the name resolves to no
    loadable method or to one that :meth:`~deepseek_enterprise.fusion.Fusion.check_registered`
    refuses (the run's config check refuses the name)."""
    from deepseek.config.components import resolve_at
    from deepseek.errors import ConfigError, PluginError
    from deepseek.plugins.host import get_host
    from deepseek_enterprise.fusion import Fusion

    try:
        target = resolve_at(host or get_host(), "fusion", fusion, "model.fusion").load()
        Fusion.check_registered(target, str(fusion))
    except (ConfigError, PluginError):
        return None
    return target.Options


def takes_recipe_fusion_options(options: type[FusionBaseOptions] | None) -> bool:
    """Whether a fusion method whose ``Options`` are ``options`` (:func:`fusion_options_class`)
    builds the built-in fused head, whose keys the recipes' ``fusion_options`` (``joint``,
    ``late_residual``) are: ``Options`` that extend ``fusion.HeadOptions`` (``concat``,
    ``cross_attention``, a plugin's built on them). The one rule for which runs the study gives
    those keys (:func:`recipe_keys`) and whose file values of them it replaces
    (:func:`~deepseek_enterprise.study_base.study_fusion_keys`)."""
    from deepseek_enterprise.fusion import HeadOptions

    return options is not None and issubclass(options, HeadOptions)


def recipe_keys(config: str, recipe: str, task: str, sources: dict[str, str] | None = None,
                host: Any = None) -> dict[str, Any]:
    """The ``[model]`` keys ``recipe`` gives model ``config`` on ``task`` (none for a unimodal
    model); ``sources``: the unimodal run folders per modality, for a model that starts from them;
    ``host``: the study's, where the fusion method is looked up (:func:`takes_recipe_fusion_options`)."""
    modalities, fusion = model_of(config)
    if len(modalities) == 1:
        return {}
    keys = dict(RECIPES[recipe])
    if "fusion_options" in keys and not takes_recipe_fusion_options(fusion_options_class(fusion, host)):
        keys.pop("fusion_options")
    if fusion == "late":
        keys = {k: keys[k] for k in ("aux_loss_weight", "modality_dropout", "freeze_pretrained") if k in keys}
    elif (recipe, task) in NO_DROPOUT:
        keys["modality_dropout"] = 0.0
    if starts_from_unimodal(config, recipe, task):
        keys["pretrained"] = dict(sources or {})
    else:
        keys.pop("freeze_pretrained", None)
    return keys


def recipe_label(config: str, recipe: str | None, sources: str = "all") -> str:
    """How the tables name a model trained with ``recipe`` on the ``sources`` part of the training
    split (the default recipe's by the config's name alone; unimodal models by it and the part
    when not ``all``)."""
    if len(model_of(config)[0]) == 1:
        return config if sources == "all" else f"{config} ({sources})"
    return config if recipe in (None, DEFAULT_RECIPE) else f"{config} ({recipe})"


def study_config(task: str, config: str, seed: int, steps: int, *, batch: int, lr: float, device: str,
                 runs_dir: str, recipe: str = DEFAULT_RECIPE, sources: dict[str, str] | None = None,
                 eval_size: int | None = None, host: Any = None) -> dict[str, Any]:
    """The ``deepseek train`` config of one run of the study (``sources``, ``host``: see
    :func:`recipe_keys`; ``eval_size``: samples in the validation and test sets, ``data.eval_size``;
    ``None``: the dataset's default)."""
    modalities, fusion = model_of(config)
    model: dict[str, Any] = {"name": "multimodal.classifier", "modalities": list(modalities), "fusion": fusion,
                             **recipe_keys(config, recipe, task, sources, host)}
    return {
        "model": model,
        "data": {"name": "multimodal.digits", "task": task, "batch_size": batch, "eval_batches": 16,
                 **({} if eval_size is None else {"eval_size": eval_size}),
                 **({} if (part := train_sources(config, recipe, task)) == "all" else {"train_sources": part})},
        "train": {"max_steps": steps, "warmup_steps": max(steps // 20, 1), "lr": lr, "min_lr": lr / 20,
                  "eval_interval": max(steps // 6, 1), "seed": seed},
        "precision": {"dtype": "fp32"},
        "strategy": {"name": "single", "device": device},
        # a checkpoint every quarter: a study stopped (SIGTERM, a kill) resumes its run from the last
        "checkpoint": {"interval": max(steps // 4, 1), "keep_last": 1, "at_end": True},
        "logging": {"progress": False, "plot": False, "runs_dir": runs_dir, "name": f"{task}-{config}-s{seed}"},
    }


def run_order(configs: list[str], recipe: str, task: str, *, given: bool = False) -> list[str]:
    """The models to train for one task and seed, in order: with a recipe whose fused models start
    from the unimodal models, those come first (added when not asked for: they are trained anyway),
    unless they are ``given`` (``unimodal_runs`` of
    :func:`~deepseek_enterprise.study.run_study`)."""
    if given or not any(starts_from_unimodal(c, recipe, task) for c in configs):
        return list(configs)
    needed = [m for c in configs if starts_from_unimodal(c, recipe, task) for m in model_of(c)[0]]
    unimodal = [c for c in UNIMODAL if c in configs or c in needed]
    return unimodal + [c for c in configs if c not in unimodal]
