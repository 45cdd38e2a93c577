"""The files of a run folder, in one place: those every run's training writes (:data:`RUN_FILES`),
those the run's dataset and model declare they write (``written_files``, checked by
:func:`declared_written_files`), and which existing file is a run's own (:func:`run_owning`), so
that no command's output option replaces it. The trainer refuses a folder in the place of any of
them when a run starts (:func:`deepseek.training.run_folder.pick_run_folder`); every command's file
output is refused over one (:func:`deepseek.paths.check_output`). Nothing here imports torch at
module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepseek.data.tokenizer import TOKENIZER_FILE
from deepseek.training.run_lock import LOCK_FILE

if TYPE_CHECKING:
    from deepseek.data.dataset import Dataset
    from deepseek.plugins.host import PluginHost

CHECKPOINTS = "checkpoints"
"""The run's checkpoint folder: every file under it is the run's."""

RUN_FILES = ("config.toml", "metrics.jsonl", "loss.png", LOCK_FILE, f"{CHECKPOINTS}/latest", f"{CHECKPOINTS}/best")
"""Files the trainer writes in every run folder, by their path in it (the resolved config, the
metrics, the loss plot, the lock of the job writing it, the checkpoint pointers)."""

KEPT_COPIES = (TOKENIZER_FILE,)
"""Copies a run keeps of files its data names (:meth:`~deepseek.data.dataset.Dataset.run_files`
of the built-in text datasets: the tokenizer), known as the run's without its dataset."""

RUN_OWN_FILES = (*(name for name in RUN_FILES if "/" not in name), *KEPT_COPIES)
"""The files directly in a run folder that are the run's own, whatever its dataset and model
(derived from :data:`RUN_FILES`, with :data:`KEPT_COPIES`)."""


def declared_written_files(cls: type, kind: str) -> tuple[str, ...]:
    """``cls.written_files`` of a dataset or model class (``kind``: ``"dataset"`` or ``"model"``,
    for the message), checked: a tuple of plain file names (no ``/``, not ``.`` or ``..``), else
    one :class:`~deepseek.errors.PluginError` naming the class."""
    names = cls.written_files  # type: ignore[attr-defined]  # Dataset's and TrainableModel's declared attribute
    if not isinstance(names, tuple) or not all(
            isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\0" not in n for n in names):
        from deepseek.errors import PluginError

        raise PluginError(f"{kind} {cls.__module__}.{cls.__qualname__}: written_files must be a tuple of file "
                          f"names in the run folder (no '/'), got {names!r}; fix the class attribute")
    return names


def written_by(dataset: Dataset, model: Any) -> tuple[str, ...]:
    """The files a run on ``dataset`` with ``model`` declares it writes in its folder: their
    ``written_files`` (a model that is no :class:`~deepseek.models.protocol.TrainableModel`
    declares none)."""
    from deepseek.models.protocol import TrainableModel

    declared = declared_written_files(type(dataset), "dataset")
    if isinstance(model, TrainableModel):
        declared += declared_written_files(type(model), "model")
    return declared


def run_owning(target: Path, host: PluginHost) -> Path | None:
    """The run folder (one holding ``config.toml`` and ``checkpoints/``) whose own file ``target``
    is or would be, existing or not (:data:`RUN_OWN_FILES`, anything under its ``checkpoints/``,
    or a file the run's dataset or model declares in ``written_files``, looked up on ``host``),
    else ``None``. Any other file in a run folder (a report a command wrote there before) may be
    written again."""
    path = target.absolute()
    for folder in list(path.parents)[:4]:
        if (folder / "config.toml").is_file() and (folder / CHECKPOINTS).is_dir():
            inside = path.relative_to(folder).parts
            if inside[0] == CHECKPOINTS:
                return folder
            if len(inside) != 1:
                return None
            return folder if inside[0] in RUN_OWN_FILES or inside[0] in declared_run_files(folder, host) else None
    return None


def declared_run_files(run: Path, host: PluginHost) -> tuple[str, ...]:
    """The names the dataset and the model of the run in ``run`` declare in ``written_files``
    (:attr:`deepseek.data.dataset.Dataset.written_files`,
    :attr:`deepseek.models.protocol.TrainableModel.written_files`), found on ``host`` by the
    ``data.name`` and ``model.name`` of the run's ``config.toml``. A component that is not
    installed, or a model registered as a factory rather than a class, declares nothing; ``()``
    when the config cannot be read. Looked up only for a file that exists in a run folder and is
    not one of :data:`RUN_OWN_FILES` (the components' modules are imported)."""
    from deepseek.errors import DeepseekError
    from deepseek.parsing import loads_toml

    try:
        config = loads_toml((run / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ()
    from deepseek.data.dataset import Dataset
    from deepseek.models.protocol import TrainableModel

    names: list[str] = []
    for kind, base in (("dataset", Dataset), ("model", TrainableModel)):
        section = config.get("data" if kind == "dataset" else "model")
        name = section.get("name") if isinstance(section, dict) else None
        if not isinstance(name, str):
            continue
        try:
            cls = host.resolve(kind, name).load()
        except DeepseekError:  # not installed here, or ambiguous: its files are not known
            continue
        if isinstance(cls, type) and issubclass(cls, base):
            names.extend(declared_written_files(cls, kind))
    return tuple(names)
