"""A plugin author's own ``[data]`` keys for the contract suites (docs/plugins.md section 9):
``--contract-data`` (or the environment variable ``DEEPSEEK_CONTRACT_DATA`` where the option is
not given), a JSON object of dataset name -> ``[data]`` keys, inline or in a JSON file. Every
suite that makes a registered dataset (the dataset contract and its resume across a pass, the
models called on its batches, the compressors' subjects) makes it with these keys on top of its
own small ones (:func:`_pairing.data_table`)."""

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


def read_contract_data(option: str | None) -> OwnData:
    """The keys of ``option`` (``--contract-data``'s value), else of :data:`ENV`; none when
    neither is set. A value starting with ``{`` is the JSON itself, any other the path of a JSON
    file. Bad input is a :class:`ValueError` of one line naming where it came from."""
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
    return own
