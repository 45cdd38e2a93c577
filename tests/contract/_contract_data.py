"""A plugin author's own ``[data]`` keys for the contract suites (docs/plugins.md section 9):
``--contract-data`` (or the environment variable ``DEEPSEEK_CONTRACT_DATA`` where the option is
not given), a JSON object of dataset name -> ``[data]`` keys, inline or in a JSON file. Every
suite that makes a registered dataset (the dataset contract and its resume across a pass, the
models called on its batches, the compressors' subjects) makes it with these keys on top of its
own small ones (:func:`_pairing.data_table`). A dataset name no registered dataset has, or a key
its ``Options`` lacks, fails them all in one line (:func:`check_names_and_keys`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OPTION = "--contract-data"
ENV = "DEEPSEEK_CONTRACT_DATA"
EXAMPLE = '\'{"acme.rows": {"train_rows": 40}}\''

OwnData = dict[str, dict[str, Any]]
"""Dataset name -> the ``[data]`` keys the author gives it."""


def own_keys(own: OwnData, name: str) -> dict[str, Any]:
    """The author's keys for dataset ``name`` (qualified, ``dist:name``): a ``dist:name`` key is
    taken before the bare name, for a name two distributions share; none when neither is given."""
    return dict(own.get(name, own.get(name.rpartition(":")[2], {})))


def read_contract_data(option: str | None, host: Any = None) -> OwnData:
    """The keys of ``option`` (``--contract-data``'s value), else of :data:`ENV`; none when
    neither is set. A value starting with ``{`` is the JSON itself, any other the path of a JSON
    file. Bad input is a :class:`ValueError` of one line naming where it came from; with ``host``,
    a dataset name or key that ``host``'s datasets do not have too (:func:`check_names_and_keys`)."""
    where, raw = (OPTION, option) if option is not None else (ENV, os.environ.get(ENV, ""))
    if not raw.strip():
        return {}
    if not raw.lstrip().startswith("{"):
        try:
            text = Path(raw).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ValueError(f"{where}: cannot read {raw} ({reason}); give a JSON object of dataset name -> "
                             f"[data] keys, or the path of a JSON file holding one, e.g. {EXAMPLE}") from None
        where, raw = f"{where}: {raw}", text
    try:
        own = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not JSON ({exc}); give an object of dataset name -> [data] keys, "
                         f"e.g. {EXAMPLE}") from None
    if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
        raise ValueError(f"{where}: expected an object of dataset name -> [data] keys, e.g. {EXAMPLE}")
    if host is not None:
        check_names_and_keys(own, host, where)
    return own


def check_names_and_keys(own: OwnData, host: Any, where: str) -> None:
    """Each dataset name of ``own`` is one of ``host``'s datasets (bare or ``dist:name``, as
    :func:`own_keys` looks them up) and each of its keys a field of that dataset's ``Options``; a
    :class:`ValueError` of one line naming the first that is not, and the valid ones. Unchecked, a
    wrong key left its dataset unmade, which the model suites read as a dataset the model does not
    take: ``test_model_output_on_a_batch`` was skipped, not failed."""
    import dataclasses

    from deepseek.config.components import options_class
    from deepseek.errors import DeepseekError
    from deepseek.names import did_you_mean

    found: dict[str, list[Any]] = {}
    for name in host.names("dataset") if "dataset" in host.known_kinds() else ():
        for comp in host.candidates("dataset", name):
            found.setdefault(name, []).append(comp)
            found.setdefault(comp.qualified_name, []).append(comp)
    for name, keys in own.items():
        if name not in found:
            bare = sorted(n for n in found if ":" not in n)
            raise ValueError(f"{where}: {name!r} names no registered dataset{did_you_mean(name, found)}; the datasets: "
                             f"{', '.join(bare) or 'none'}")
        for comp in found[name]:
            try:  # a dataset without an Options dataclass: its own contract test names that too
                fields = [f.name for f in dataclasses.fields(options_class(comp.load(), kind="dataset", name=name))]
            except DeepseekError as exc:
                raise ValueError(f"{where}: {name}: {exc}") from None
            wrong = [key for key in keys if key not in fields]
            if wrong:
                raise ValueError(f"{where}: {name}.{wrong[0]}: not a [data] key of dataset {comp.qualified_name}"
                                 f"{did_you_mean(wrong[0], fields)}; its keys: {', '.join(fields) or 'none'}")
