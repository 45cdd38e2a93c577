"""Which study a ``deepseek tune`` run works on: what it was asked for (:class:`StudySettings`),
and the study created in, or loaded from, its storage (:func:`open_study`). A study that exists is
read back like user input and refused, in one line, when it is another run's (another objective,
tuner, search space, base config or direction), when its rows cannot be read, or when ``--out``
holds trial folders that are not its trials (another storage's study copied there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepseek.errors import UsageError
from deepseek.plugins.records import describe_error
from deepseek_enterprise.tune.limits import check_settings
from deepseek_enterprise.tune.optuna_parts import create_pruner, create_sampler
from deepseek_enterprise.tune.space import SearchSpace
from deepseek_enterprise.tune.storage import open_storage


@dataclass(frozen=True)
class StudySettings:
    """What ``deepseek tune`` was asked for."""

    name: str
    trials: int
    objective: str
    out: Path
    storage: str | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = 0
    baseline: bool = True

    def __post_init__(self) -> None:
        check_settings(self.trials, self.timeout)  # the ranges --trials and --timeout take (limits.py)


def study_identity(settings: StudySettings, tuner_name: str, space: SearchSpace, config_text: str) -> dict[str, str]:
    """What a study records of the run that created it (objective, tuner, space, base config), so
    that another run joining or resuming it must be the same (:func:`open_study`)."""
    import hashlib

    return {"objective": settings.objective, "tuner": tuner_name, "space": space.fingerprint(),
            "config_sha256": hashlib.sha256(config_text.encode()).hexdigest()}


def open_study(settings: StudySettings, direction: str, identity: dict[str, str],
               space: SearchSpace | None = None, baseline: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Create or load the study (same objective, tuner, space and base config, or refused); with
    ``space``, its trials are read back like user input (``storage.check_trials``; ``baseline``:
    the base config's values, which its baseline trial runs even outside the space)."""
    from deepseek.errors import DeepseekError

    storage = open_storage(settings.storage, settings.out)
    try:
        return _open(storage, settings, direction, identity, space, baseline or {}), storage
    except DeepseekError:
        raise
    except Exception as exc:  # noqa: BLE001 - Optuna decoding rows it did not write (edited, damaged)
        raise UsageError(f"{_storage_name(settings)}: study {settings.name!r} cannot be read "
                         f"({describe_error(exc)}); restore it, or pick a new --out") from exc


def _storage_name(settings: StudySettings) -> str:
    from deepseek_enterprise.db_url import shown_url

    return f"--storage {shown_url(settings.storage)}" if settings.storage else f"{settings.out / 'study.db'}"


def _open(storage: Any, settings: StudySettings, direction: str, identity: dict[str, str],
          space: SearchSpace | None, baseline: dict[str, Any]) -> Any:
    import optuna

    from deepseek_enterprise.tune.storage import check_trials

    held = sorted(int(p.name) for p in (settings.out / "trials").glob("[0-9]*") if p.name.isdigit())
    if held:  # listed before the storage is read: a trial has its number before its folder is made
        _check_trial_folders(storage, settings, held)
    try:
        study = optuna.create_study(
            study_name=settings.name, storage=storage, sampler=create_sampler(settings.sampler, settings.seed),
            pruner=create_pruner(settings.pruner), direction=direction, load_if_exists=True)
    except ValueError as exc:  # an existing study with another direction
        raise UsageError(f"--study {settings.name}: {exc}; use another --study name") from None
    if study.direction.name.lower() != direction:
        raise UsageError(f"--study {settings.name}: exists with direction {study.direction.name.lower()}, "
                         f"this objective needs {direction}; use another --study name")
    done = len(study.get_trials(deepcopy=False))
    if done and settings.seed is not None:
        # Resumed or joined: the same seed would propose the fresh study's first values again.
        study.sampler = create_sampler(settings.sampler, (settings.seed * 1_000_003 + done) % 2**32)
    saved = study.user_attrs.get("deepseek")
    if saved is None:
        study.set_user_attr("deepseek", identity)
    elif not isinstance(saved, dict):
        raise UsageError(f"{_storage_name(settings)}: study {settings.name!r} records {saved!r} where deepseek tune "
                         "keeps its objective, tuner, space and config; restore it, or pick a new --out")
    else:
        for key, value in identity.items():
            if saved.get(key) != value:
                what = "the base config file's content" if key == "config_sha256" else f"{key} {saved.get(key)!r}"
                raise UsageError(f"--study {settings.name}: was created with {what}, not this one; resume it with "
                                 "the same config, space and objective, or use another --study name")
    if space is not None:
        check_trials(study, space, baseline, f"{_storage_name(settings)}: study {settings.name!r}",
                     "restore it, or pick a new --out")
    return study


def _check_trial_folders(storage: Any, settings: StudySettings, held: list[int]) -> None:
    """The trial folders of ``--out`` must be trials of this study in this storage: a copied study
    folder run with another ``--storage`` (or a study that is not there) would run its trials over
    them, each refused as 'already holds a run', and overwrite trials.json and best.toml."""
    try:
        study_id = storage.get_study_id_from_name(settings.name)
        known = storage.get_n_trials(study_id)
    except KeyError:
        study_id, known = None, 0
    if held[-1] < known:
        return
    where = _storage_name(settings)
    has = f"has {known} trial(s) of study {settings.name!r}" if study_id is not None else \
        f"has no study {settings.name!r}"
    raise UsageError(f"--out {settings.out}: holds trials/{held[-1]:04d} but {where} {has}: the folder belongs to "
                     "another storage or study; give that study's --storage and --study, or pick a new --out")
